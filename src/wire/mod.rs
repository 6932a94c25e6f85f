//! Wire formats: how each API a provider or a client speaks shapes its
//! requests, answers, streams and errors, and how one translates to
//! another. Pure functions over bytes; no I/O.

pub mod openai;
