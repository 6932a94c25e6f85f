//! The relay end to end over in-memory streams: any way the network splits
//! the upstream bytes, the client gets the same bytes and the same usage.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use proptest::prelude::*;

use super::*;
use crate::accounting::{Billing, Exchange, RequestInfo, Routed};
use crate::config::{Config, Format};
use crate::metrics::Metrics;
use crate::routing::{HealthBook, Routes};
use crate::usage::Penalties;
use crate::usage::{Ledger, Totals};

fn exchange() -> (Exchange, Arc<crate::routing::Group>) {
    let yaml = "api_key: k\ngroups:\n  - name: g\n    models: [{provider: p, name: m}]\nproviders:\n  - {name: p, base_url: \"http://x\", api_keys: [a]}\n";
    let config = Config::parse(yaml, Format::Yaml).unwrap();
    let routes = Routes::build(
        &config,
        &Arc::new(Ledger::new()),
        &Arc::new(HealthBook::default()),
        &Arc::new(Metrics::new()),
    );
    let group = routes.group("g").unwrap().clone();
    let reservation = group.candidates[0].usage.reserve(4);
    let info = RequestInfo {
        request_id: "t".into(),
        endpoint: "chat.completions",
        started: std::time::Instant::now(),
    };
    (
        Exchange::new(
            info,
            Routed {
                group: group.clone(),
                candidate: 0,
                attempts: 1,
                status: 200,
                reservation,
            },
            Billing {
                penalties: Penalties::default(),
                client: None,
                request_body: Bytes::new(),
                metrics: Arc::new(Metrics::new()),
            },
        ),
        group,
    )
}

fn run(chunks: Vec<Vec<u8>>, strip: bool) -> (Vec<u8>, Totals) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (exchange, group) = exchange();
        let upstream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Infallible>(Bytes::from(c))),
        );
        let options = RelayOptions {
            strip_usage_chunk: strip,
            idle: Duration::from_secs(5),
            deadline: Instant::now() + Duration::from_secs(5),
            encoding: None,
            stop: CancellationToken::new(),
        };
        let metrics = Metrics::new();
        let gauges = (metrics.in_flight(), metrics.in_flight());
        let out: Vec<u8> = relay(upstream, exchange, options, gauges)
            .map(|b| b.unwrap().to_vec())
            .concat()
            .await;
        // An estimate settles on the blocking pool: wait for it.
        let usage = &group.candidates[0].usage;
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while usage.totals().requests == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        waited.await.expect("the exchange settles");
        (out, usage.totals())
    })
}

const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"h\u{e9}llo \u{1f600}\"}}]}\n\n: keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r\n\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n";

#[test]
fn usage_chunk_is_counted_and_stripped_when_the_router_asked() {
    let (out, totals) = run(vec![STREAM.as_bytes().to_vec()], true);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("usage"));
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!((totals.tokens, totals.estimated), (5, 0));

    let (out, _) = run(vec![STREAM.as_bytes().to_vec()], false);
    assert_eq!(
        out,
        STREAM.as_bytes(),
        "without stripping, bytes pass through exactly"
    );
}

#[test]
fn a_stream_without_usage_is_estimated_from_chunks() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\n";
    let (_, totals) = run(vec![body.as_bytes().to_vec()], true);
    assert_eq!(totals.estimated, 1);
    // A first stream without usage keeps no text: one token per chunk.
    // (Later streams of the same pair keep text for tiktoken; see
    // tests/features.rs.)
    assert_eq!(totals.completion_tokens, 2);
    assert_eq!(totals.tokens, totals.prompt_tokens + 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, rng_seed: proptest::test_runner::RngSeed::Fixed(23), ..ProptestConfig::default() })]

    #[test]
    fn any_split_gives_identical_output_and_usage(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..12), strip in any::<bool>()) {
        let bytes = STREAM.as_bytes();
        let mut cuts = cuts;
        cuts.sort();
        cuts.dedup();
        let mut chunks = Vec::new();
        let mut last = 0;
        for c in cuts.into_iter().chain(std::iter::once(bytes.len())) {
            chunks.push(bytes[last..c].to_vec());
            last = c;
        }
        let whole = run(vec![bytes.to_vec()], strip);
        let split = run(chunks, strip);
        prop_assert_eq!(whole.0, split.0);
        prop_assert_eq!(whole.1, split.1);
    }

    #[test]
    fn arbitrary_upstream_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6)) {
        let _ = run(chunks, true);
    }
}
