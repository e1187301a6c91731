//! Placeholder until the guests land.
#![no_std]
