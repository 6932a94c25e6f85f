//! Selection over 100 keys × 20 models (2,000 candidates): the pure ranking,
//! and a pick from a real routing table (atomic loads included).

use criterion::{Criterion, criterion_group, criterion_main};
use llm_router::config::{Config, Format};
use llm_router::metrics::Metrics;
use llm_router::routing::select::{View, pick};
use llm_router::routing::{HealthBook, Routes, now_ms};
use llm_router::usage::Ledger;
use std::hint::black_box;
use std::sync::Arc;

fn config(keys: usize, models: usize) -> Config {
    let mut yaml = String::from("api_key: k\ngroups:\n  - name: g\n    models:\n");
    for m in 0..models {
        yaml.push_str(&format!(
            "      - {{weight: {}, provider: p, name: m{m}}}\n",
            1 + m % 3
        ));
    }
    yaml.push_str("providers:\n  - name: p\n    base_url: http://127.0.0.1:1/v1\n    api_keys:\n");
    for k in 0..keys {
        yaml.push_str(&format!("      - key-{k}\n"));
    }
    Config::parse(&yaml, Format::Yaml).unwrap()
}

fn selection(c: &mut Criterion) {
    let views: Vec<View> = (0..2000u64)
        .map(|i| View {
            weight: 1 + i % 3,
            usage: (i * 7919) % 100_000,
            ready_at: 0,
        })
        .collect();
    c.bench_function("select::pick, 2000 candidates", |b| {
        b.iter(|| pick(black_box(views.iter().copied()), &[], 1))
    });

    let routes = Routes::build(
        &config(100, 20),
        &Arc::new(Ledger::new()),
        &Arc::new(HealthBook::default()),
        &Arc::new(Metrics::new()),
    );
    let group = routes.group("g").unwrap();
    for (i, cand) in group.candidates.iter().enumerate() {
        drop(cand.usage.reserve((i as u64 * 7919) % 1000));
    }
    c.bench_function("Group::pick, 100 keys x 20 models", |b| {
        b.iter(|| group.pick(black_box(&[]), now_ms()))
    });
    let small = Routes::build(
        &config(2, 1),
        &Arc::new(Ledger::new()),
        &Arc::new(HealthBook::default()),
        &Arc::new(Metrics::new()),
    );
    let small = small.group("g").unwrap();
    c.bench_function("Group::pick, 2 keys x 1 model", |b| {
        b.iter(|| small.pick(black_box(&[]), now_ms()))
    });
}

criterion_group!(benches, selection);
criterion_main!(benches);
