//! Inclusive ranges of a 16-bit field as the fewest aligned power-of-two blocks, so
//! that a port range (or an ICMP type/code range) fits an LPM trie as masked keys.
//!
//! The greedy walk — at each step take the largest aligned block that starts at the
//! current value and stays inside the range — is optimal; a range needs at most
//! 2 × 16 − 2 = 30 blocks (`1..=65534`).

/// Width of the field in bits.
pub const FIELD_BITS: u32 = 16;

/// The blocks covering `from..=to`, in ascending order, as `(start, prefix_len)` with
/// `prefix_len` counted within the 16-bit field (0 = every value, 16 = one value).
/// Empty when `from > to`.
pub fn masked_blocks(from: u16, to: u16) -> Vec<(u16, u32)> {
    let mut blocks = Vec::new();
    let (mut lo, hi) = (u32::from(from), u32::from(to));
    while lo <= hi {
        // The alignment of `lo` bounds the block size; the end of the range bounds it too.
        let mut bits = if lo == 0 { FIELD_BITS } else { lo.trailing_zeros().min(FIELD_BITS) };
        while lo + (1 << bits) - 1 > hi {
            bits -= 1;
        }
        // `lo` ≤ `hi` ≤ 65535 here, so the narrowing is exact.
        blocks.push((lo as u16, FIELD_BITS - bits));
        lo += 1 << bits;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values a block covers.
    fn span(start: u16, prefix_len: u32) -> (u32, u32) {
        let size = 1u32 << (FIELD_BITS - prefix_len);
        (u32::from(start), u32::from(start) + size - 1)
    }

    /// Checks that the blocks are aligned, ascending, disjoint and cover exactly the range.
    fn check_cover(from: u16, to: u16, blocks: &[(u16, u32)]) {
        let mut next = u32::from(from);
        for &(start, len) in blocks {
            assert!(len <= FIELD_BITS, "{from}..={to}: prefix {len}");
            let (lo, hi) = span(start, len);
            assert_eq!(lo % (1 << (FIELD_BITS - len)), 0, "{from}..={to}: block {start}/{len} not aligned");
            assert_eq!(lo, next, "{from}..={to}: gap or overlap at {start}/{len}");
            next = hi + 1;
        }
        assert_eq!(next, u32::from(to) + 1, "{from}..={to}: not covered to the end");
    }

    /// The fewest aligned blocks covering `lo..=hi`, by trying every choice.
    fn fewest(lo: u32, hi: u32, memo: &mut std::collections::HashMap<(u32, u32), usize>) -> usize {
        if lo > hi {
            return 0;
        }
        if let Some(&n) = memo.get(&(lo, hi)) {
            return n;
        }
        let mut best = usize::MAX;
        for bits in 0..=FIELD_BITS {
            let size = 1u32 << bits;
            if lo.is_multiple_of(size) && lo + size - 1 <= hi {
                best = best.min(1 + fewest(lo + size, hi, memo));
            }
        }
        memo.insert((lo, hi), best);
        best
    }

    #[test]
    fn every_small_range_is_covered_by_the_fewest_blocks() {
        let mut memo = std::collections::HashMap::new();
        for from in 0u16..128 {
            for to in from..128 {
                let blocks = masked_blocks(from, to);
                check_cover(from, to, &blocks);
                assert_eq!(blocks.len(), fewest(u32::from(from), u32::from(to), &mut memo), "{from}..={to}");
            }
        }
    }

    #[test]
    fn ranges_at_the_top_of_the_field_do_not_overflow() {
        for from in 65400u16..=65535 {
            for to in from..=65535 {
                check_cover(from, to, &masked_blocks(from, to));
            }
        }
        assert_eq!(masked_blocks(65535, 65535), vec![(65535, 16)]);
        assert_eq!(masked_blocks(32768, 65535), vec![(32768, 1)]);
    }

    #[test]
    fn whole_field_single_values_and_the_worst_case() {
        assert_eq!(masked_blocks(0, 65535), vec![(0, 0)]);
        for port in [0u16, 1, 22, 80, 443, 1024, 3389, 65534, 65535] {
            assert_eq!(masked_blocks(port, port), vec![(port, 16)]);
        }
        let worst = masked_blocks(1, 65534);
        check_cover(1, 65534, &worst);
        assert_eq!(worst.len(), 30);
        assert_eq!(masked_blocks(1024, 65535).len(), 6);
        assert_eq!(masked_blocks(16, 31), vec![(16, 12)]);
    }

    #[test]
    fn an_inverted_range_is_empty() {
        assert!(masked_blocks(10, 9).is_empty());
    }

    #[test]
    fn random_ranges_stay_within_thirty_blocks() {
        // A fixed linear congruential sequence: reproducible without a dependency.
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let a = (x >> 8) as u16;
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let b = (x >> 8) as u16;
            let (from, to) = (a.min(b), a.max(b));
            let blocks = masked_blocks(from, to);
            check_cover(from, to, &blocks);
            assert!(blocks.len() <= 30, "{from}..={to}: {} blocks", blocks.len());
        }
    }
}
