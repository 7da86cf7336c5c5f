//! The latency of one load from memory as the data read grows: a chase of pointers
//! through cache lines in random order, so that neither the prefetcher nor the core's
//! out-of-order window hides a miss. Where the time per load jumps is where a cache
//! ends; the compiler's scale benchmark (`benches/scale.rs`) is read against it.
//!
//! `cargo run --release -p lanes-compile --example memory_latency`

use std::hint::black_box;
use std::time::Instant;

/// One cache line, in `usize` words.
const LINE: usize = 64 / std::mem::size_of::<usize>();

/// Loads timed per size.
const LOADS: usize = 4_000_000;

fn main() {
    for mib in [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256] {
        let ns = nanos_per_load(mib * 1024 * 1024 / 64);
        println!("{mib:>4} MiB: {ns:6.1} ns per load");
    }
}

/// The mean time of a dependent load over `lines` cache lines visited in one random
/// cycle.
fn nanos_per_load(lines: usize) -> f64 {
    let order = shuffled(lines);
    // Word 0 of each line holds the index of the next line's word 0.
    let mut next = vec![0usize; lines * LINE];
    for (i, &line) in order.iter().enumerate() {
        next[line * LINE] = order[(i + 1) % lines] * LINE;
    }
    let mut at = 0;
    for _ in 0..lines {
        at = next[at];
    }
    let start = Instant::now();
    for _ in 0..LOADS {
        at = next[at];
    }
    let elapsed = start.elapsed();
    black_box(at);
    elapsed.as_nanos() as f64 / LOADS as f64
}

/// `0..n` in a random order (Fisher–Yates with xorshift64, fixed seed).
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}
