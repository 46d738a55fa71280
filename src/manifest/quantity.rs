//! Kubernetes resource quantities (`250m`, `0.5`, `64Mi`, `128M`, `1e6`).
//!
//! Hand-written because the grammar is tiny and no small crate implements it; values are
//! kept in milli-units so CPU (`250m`) and memory (`64Mi`) share one representation.

/// A parsed quantity in thousandths of the base unit (millicores, millibytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    milli: i128,
}

impl Quantity {
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        if number.is_empty() || number.starts_with('-') {
            return None;
        }
        let number = number.strip_prefix('+').unwrap_or(number);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        let digits_ok = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        if !digits_ok(int_part)
            || !digits_ok(frac_part)
            || (int_part.is_empty() && frac_part.is_empty())
        {
            return None;
        }
        // Scale as (multiplier numerator, divisor) applied to the milli-value.
        let (mul, div): (i128, i128) = match suffix {
            "" => (1000, 1),
            "m" => (1, 1),
            "k" => (1_000_000, 1),
            "M" => (1_000_000_000, 1),
            "G" => (1_000_000_000_000, 1),
            "T" => (1_000_000_000_000_000, 1),
            "P" => (1_000_000_000_000_000_000, 1),
            "Ki" => (1024 * 1000, 1),
            "Mi" => (1024 * 1024 * 1000, 1),
            "Gi" => (1024 * 1024 * 1024 * 1000, 1),
            "Ti" => (1024_i128.pow(4) * 1000, 1),
            "Pi" => (1024_i128.pow(5) * 1000, 1),
            s if s.starts_with(['e', 'E']) => {
                let exp: u32 = s[1..].parse().ok()?;
                if exp > 18 {
                    return None;
                }
                (1000 * 10_i128.pow(exp), 1)
            }
            _ => return None,
        };
        if int_part.len() > 20 || frac_part.len() > 9 {
            return None;
        }
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let frac: i128 = if frac_part.is_empty() {
            0
        } else {
            frac_part.parse().ok()?
        };
        let frac_scale = 10_i128.pow(frac_part.len() as u32);
        let milli = int.checked_mul(mul)? + (frac * mul) / frac_scale;
        Some(Quantity { milli: milli / div })
    }

    pub fn milli(&self) -> i128 {
        self.milli
    }

    /// The value in whole base units, rounded up (the kubelet rounds memory up to a byte).
    pub fn value(&self) -> i128 {
        (self.milli + 999) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::Quantity;

    #[test]
    fn parses_cpu_and_memory_forms() {
        assert_eq!(Quantity::parse("250m").unwrap().milli(), 250);
        assert_eq!(Quantity::parse("0.5").unwrap().milli(), 500);
        assert_eq!(Quantity::parse("1").unwrap().milli(), 1000);
        assert_eq!(Quantity::parse("64Mi").unwrap().value(), 64 * 1024 * 1024);
        assert_eq!(Quantity::parse("128M").unwrap().value(), 128_000_000);
        assert_eq!(Quantity::parse("1e6").unwrap().value(), 1_000_000);
        assert_eq!(
            Quantity::parse("1.5Gi").unwrap().value(),
            1536 * 1024 * 1024
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "lots", "1 gig", "-1", "1.2.3", "Mi", "1ee", "12x"] {
            assert!(Quantity::parse(bad).is_none(), "{bad:?} must not parse");
        }
    }
}
