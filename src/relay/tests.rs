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
use crate::metrics::Metrics;
use crate::payload::Api;
use crate::routing::Routes;
use crate::usage::Penalties;
use crate::usage::Totals;

fn exchange() -> (Exchange, Arc<crate::routing::Group>) {
    let yaml = "api_key: k\ngroups:\n  - name: g\n    models: [{provider: p, name: m}]\nproviders:\n  - {name: p, base_url: \"http://x\", api_keys: [a]}\n";
    let routes = Routes::from_yaml(yaml);
    let group = routes.group("g").unwrap().clone();
    let reservation = group.candidates[0].usage.reserve(4);
    let info = RequestInfo {
        request_id: "t".into(),
        endpoint: "chat.completions",
        started: std::time::Instant::now(),
        trace: Default::default(),
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
                trace: Default::default(),
            },
            Billing {
                penalties: Penalties::default(),
                cooldown: Default::default(),
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
            formats: Formats {
                client: Api::OpenAi,
                provider: Api::OpenAi,
            },
            model: "m".into(),
            include_usage: !strip,
            strip_usage_chunk: strip,
            idle: Duration::from_secs(5),
            deadline: Instant::now() + Duration::from_secs(5),
            encoding: None,
            stop: CancellationToken::new(),
            max_event_bytes: 4 << 20,
        };
        let metrics = Metrics::new();
        let gauges = (metrics.in_flight(), metrics.in_flight());
        let out: Vec<u8> = relay(upstream, exchange, options, gauges, None)
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

// ------------------------------------------------------- non-streaming bodies

mod bodies {
    use super::*;
    use crate::relay::body::{BodyOptions, Head, read_head, relay_body};
    use crate::relay::compress::Encoding;
    use tokio::io::AsyncReadExt;

    fn options(max_bytes: Option<u64>) -> BodyOptions {
        BodyOptions {
            idle: Duration::from_secs(5),
            deadline: Instant::now() + Duration::from_secs(5),
            max_bytes,
        }
    }

    fn pieces(body: &[u8], size: usize) -> Vec<Result<Bytes, std::io::Error>> {
        body.chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    }

    /// Relays `body` cut in `size`-byte pieces after a 16-byte window; what
    /// the client got, whether it ended in an error, and the cell's totals.
    fn relay_in_pieces(
        body: &[u8],
        size: usize,
        encoding: Option<Encoding>,
        max_bytes: Option<u64>,
        fail_at_end: bool,
    ) -> (Vec<u8>, bool, Totals) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (exchange, group) = exchange();
            let mut chunks = pieces(body, size);
            if fail_at_end {
                chunks.push(Err(std::io::Error::other("reset")));
            }
            let mut upstream = futures_util::stream::iter(chunks);
            let opts = options(max_bytes);
            let head = read_head(&mut upstream, 16, &opts).await.unwrap();
            assert!(!head.ended);
            let metrics = Metrics::new();
            let mut out = Vec::new();
            let mut failed = false;
            let mut stream = Box::pin(relay_body(
                head,
                upstream,
                exchange,
                opts,
                crate::relay::body::Output {
                    encoding,
                    usage: crate::relay::sse::usage_value,
                },
                metrics.in_flight(),
            ));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(b) => out.extend_from_slice(&b),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            drop(stream);
            let usage = &group.candidates[0].usage;
            tokio::time::timeout(Duration::from_secs(5), async {
                while usage.totals().requests == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("the exchange settles");
            (out, failed, usage.totals())
        })
    }

    const BODY: &[u8] = br#"{"id":"x","choices":[{"message":{"content":"a long \"usage\": answer"}}],"usage":{"prompt_tokens":4,"completion_tokens":6,"total_tokens":10}}"#;

    #[test]
    fn a_long_body_passes_through_and_settles_with_its_usage() {
        for size in [1, 7, 64, 4096] {
            let (out, failed, totals) = relay_in_pieces(BODY, size, None, None, false);
            assert_eq!(out, BODY, "pieces of {size}");
            assert!(!failed);
            assert_eq!((totals.tokens, totals.estimated, totals.errors), (10, 0, 0));
        }
    }

    #[test]
    fn a_compressed_relay_decodes_to_the_same_bytes() {
        let (out, _, totals) = relay_in_pieces(BODY, 9, Some(Encoding::Gzip), None, false);
        assert_ne!(out, BODY);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let plain = rt.block_on(async {
            let mut decoder = async_compression::tokio::bufread::GzipDecoder::new(&out[..]);
            let mut plain = Vec::new();
            decoder.read_to_end(&mut plain).await.unwrap();
            plain
        });
        assert_eq!(plain, BODY);
        assert_eq!(totals.tokens, 10);
    }

    #[test]
    fn a_body_that_breaks_or_grows_too_large_is_cut_off_as_a_failure() {
        let (out, failed, totals) = relay_in_pieces(BODY, 10, None, None, true);
        assert!(failed);
        assert_eq!(out, BODY, "everything before the break was relayed");
        assert_eq!(totals.errors, 1);
        let (out, failed, totals) = relay_in_pieces(BODY, 10, None, Some(50), false);
        assert!(failed);
        assert!(out.len() <= 50, "{}", out.len());
        assert_eq!(totals.errors, 1);
    }

    #[test]
    fn a_short_body_ends_within_the_window_and_a_long_one_does_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut up = futures_util::stream::iter(pieces(BODY, 8));
            let head = read_head(&mut up, 4096, &options(None)).await.unwrap();
            assert!(head.ended);
            assert_eq!(head.len, BODY.len() as u64);
            assert_eq!(&head.concat()[..], BODY);
            let mut up = futures_util::stream::iter(pieces(BODY, 8));
            let Head { chunks, len, ended } = read_head(&mut up, 20, &options(None)).await.unwrap();
            assert!(!ended);
            assert_eq!((chunks.len(), len), (3, 24));
            let mut up = futures_util::stream::iter(pieces(BODY, 8));
            let e = read_head(&mut up, 4096, &options(Some(30)))
                .await
                .unwrap_err();
            assert_eq!(e, Outcome::ResponseTooLarge);
            let mut broken =
                futures_util::stream::iter(vec![Err::<Bytes, _>(std::io::Error::other("x"))]);
            let e = read_head(&mut broken, 4096, &options(None))
                .await
                .unwrap_err();
            assert_eq!(e, Outcome::UpstreamBodyFailed);
            let mut stalled = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
            let quick = BodyOptions {
                idle: Duration::from_millis(20),
                ..options(None)
            };
            let e = read_head(&mut stalled, 4096, &quick).await.unwrap_err();
            assert_eq!(e, Outcome::UpstreamTimeout);
        });
    }
}
