//! Host integration tests live in `tests/tests/`; the bare-metal test guests in
//! `tests/guests/`; the QEMU scenarios in `tests/scenarios/`.
#![forbid(unsafe_code)]
