//! The SSE relay over an in-memory stream of 100 chat-completion events
//! (plus the usage chunk and [DONE]), split into network-sized reads, and
//! the request-body rewrite.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use llm_router::accounting::{Billing, Exchange, RequestInfo, Routed};
use llm_router::config::{Config, Format};
use llm_router::metrics::Metrics;
use llm_router::payload::Api;
use llm_router::relay::{Formats, RelayOptions, relay};
use llm_router::routing::{HealthBook, Routes};
use llm_router::usage::Ledger;
use llm_router::usage::Penalties;
use std::hint::black_box;
use tokio_util::sync::CancellationToken;

fn stream_bytes() -> Vec<Bytes> {
    let mut all = String::new();
    for i in 0..100 {
        all.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    all.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":100,\"total_tokens\":110}}\n\ndata: [DONE]\n\n");
    // Reads of 1,400 bytes, as a network would deliver them.
    all.as_bytes()
        .chunks(1400)
        .map(Bytes::copy_from_slice)
        .collect()
}

fn bench(c: &mut Criterion) {
    let yaml = "api_key: k\ngroups:\n  - name: g\n    models: [{provider: p, name: m}]\nproviders:\n  - {name: p, base_url: \"http://x\", api_keys: [a]}\n";
    let config = Config::parse(yaml, Format::Yaml).unwrap();
    let metrics = Arc::new(Metrics::new());
    let routes = Routes::build(
        &config,
        &Arc::new(Ledger::new()),
        &Arc::new(HealthBook::default()),
        &metrics,
    );
    let group = routes.group("g").unwrap().clone();
    let chunks = stream_bytes();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(102));
    g.bench_function("100-event stream, usage chunk stripped", |b| {
        b.iter(|| {
            let reservation = group.candidates[0].usage.reserve(10);
            let info = RequestInfo {
                request_id: "r".into(),
                endpoint: "chat.completions",
                started: std::time::Instant::now(),
                trace: Default::default(),
            };
            let exchange = Exchange::new(
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
                    metrics: metrics.clone(),
                },
            );
            let options = RelayOptions {
                formats: Formats {
                    client: Api::OpenAi,
                    provider: Api::OpenAi,
                },
                model: "m".into(),
                include_usage: false,
                strip_usage_chunk: true,
                idle: Duration::from_secs(60),
                deadline: tokio::time::Instant::now() + Duration::from_secs(60),
                encoding: None,
                stop: CancellationToken::new(),
                max_event_bytes: 4 << 20,
            };
            let upstream =
                futures_util::stream::iter(chunks.clone().into_iter().map(Ok::<_, Infallible>));
            let gauges = (metrics.in_flight(), metrics.in_flight());
            let out: usize = rt.block_on(
                relay(upstream, exchange, options, gauges, None)
                    .map(|b| b.unwrap().len())
                    .fold(0, |a, n| async move { a + n }),
            );
            black_box(out)
        })
    });
    g.finish();

    let body = br#"{"model":"g","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Hello there, how are you?"}],"temperature":0.7,"stream":true}"#;
    c.bench_function("payload parse + rewrite", |b| {
        b.iter(|| {
            let p = llm_router::payload::parse(black_box(body)).unwrap();
            black_box(p.rewrite(body, b"\"gpt-4o-mini\""))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
