//! Weight arithmetic shared by the pickers: APISIX's GCD rules and reduction to small units.

/// The GCD of `weights` as APISIX computes it: zero weights do not change it, and when every
/// weight is zero the GCD is 1 (so dividing by it is always safe).
pub(crate) fn gcd(weights: impl IntoIterator<Item = u32>) -> u32 {
    match weights.into_iter().fold(0, euclid) {
        0 => 1,
        g => g,
    }
}

fn euclid(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        euclid(b, a % b)
    }
}

/// Reduces `weights` to units: each weight divided by the GCD. When the units add up to more
/// than `budget`, they are scaled down proportionally (a non-zero weight keeps at least one
/// unit) and reduced by their GCD again, so precomputed tables stay bounded. Within the budget
/// the result is exactly `weight / gcd`, as APISIX uses.
pub(crate) fn units(weights: &[u32], budget: u64) -> Vec<u32> {
    let g = gcd(weights.iter().copied());
    let mut units: Vec<u32> = weights.iter().map(|w| w / g).collect();
    let total: u64 = units.iter().map(|&u| u64::from(u)).sum();
    if total > budget {
        for unit in units.iter_mut().filter(|u| **u > 0) {
            let scaled = u128::from(*unit) * u128::from(budget) / u128::from(total);
            *unit = u32::try_from(scaled).map_or(u32::MAX, |s| s.max(1));
        }
        let g = gcd(units.iter().copied());
        units.iter_mut().for_each(|u| *u /= g);
    }
    units
}

#[cfg(test)]
mod tests {
    use super::{gcd, units};

    #[test]
    fn gcd_follows_apisix_rules() {
        assert_eq!(gcd([2, 4, 6]), 2);
        assert_eq!(
            gcd([0, 4, 8]),
            4,
            "a leading zero is replaced by the next weight"
        );
        assert_eq!(gcd([9, 0, 6]), 3, "zeros in the middle do not matter");
        assert_eq!(gcd([0, 0]), 1, "all zero gives 1");
        assert_eq!(gcd([]), 1);
        assert_eq!(gcd([7]), 7);
        assert_eq!(gcd([5, 7]), 1);
    }

    #[test]
    fn units_divide_by_gcd_within_budget() {
        assert_eq!(units(&[2, 4, 6], 100), vec![1, 2, 3]);
        assert_eq!(units(&[0, 10, 15], 100), vec![0, 2, 3]);
        assert_eq!(units(&[0, 0], 100), vec![0, 0]);
    }

    #[test]
    fn units_scale_down_over_budget() {
        assert_eq!(units(&[3001, 1000], 40), vec![10, 3]);
        let scaled = units(&[1_000_000, 1, 0], 1000);
        assert_eq!(scaled, vec![999, 1, 0], "non-zero weights keep one unit");
        let big = units(&[u32::MAX, u32::MAX - 1], 1 << 16);
        assert!(big.iter().map(|&u| u64::from(u)).sum::<u64>() <= 1 << 16);
        assert!(big.iter().all(|&u| u > 0));
    }
}
