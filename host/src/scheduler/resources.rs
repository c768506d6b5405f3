//! Resource quantities in fixed point, so that adding and removing
//! fractional CPUs (0.25 + 0.25 + 0.5) never drifts.

use std::collections::BTreeMap;
use std::fmt;

/// Units per whole CPU or custom resource (1/1000).
const MILLI: f64 = 1000.0;

/// A bundle of resources: a node's total or free capacity, or what one task
/// holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceSet {
    /// CPU in thousandths.
    pub cpu_milli: u64,
    /// Memory in bytes.
    pub memory: u64,
    /// Custom resources in thousandths, by name.
    pub custom: BTreeMap<String, u64>,
}

/// Converts a user-facing amount to thousandths; negative and non-finite
/// amounts are errors.
pub fn to_milli(amount: f64) -> Result<u64, String> {
    if !amount.is_finite() || amount < 0.0 {
        return Err(format!(
            "resource amounts must be finite and non-negative, got {amount}"
        ));
    }
    Ok((amount * MILLI).round() as u64)
}

impl ResourceSet {
    /// A set with `cpus` CPUs, `memory` bytes and the given custom amounts.
    pub fn new(cpus: f64, memory: u64, custom: &BTreeMap<String, f64>) -> Result<Self, String> {
        let mut set = ResourceSet {
            cpu_milli: to_milli(cpus)?,
            memory,
            custom: BTreeMap::new(),
        };
        for (name, amount) in custom {
            let milli = to_milli(*amount)?;
            if milli > 0 {
                set.custom.insert(name.clone(), milli);
            }
        }
        Ok(set)
    }

    /// Whether `request` fits in `self`.
    pub fn fits(&self, request: &ResourceSet) -> bool {
        self.cpu_milli >= request.cpu_milli
            && self.memory >= request.memory
            && request
                .custom
                .iter()
                .all(|(k, v)| self.custom.get(k).copied().unwrap_or(0) >= *v)
    }

    /// Takes `request` out of `self` (which must fit it).
    pub fn take(&mut self, request: &ResourceSet) {
        self.cpu_milli -= request.cpu_milli;
        self.memory -= request.memory;
        for (k, v) in &request.custom {
            if let Some(have) = self.custom.get_mut(k) {
                *have -= v;
            }
        }
    }

    /// Gives `request` back to `self`.
    pub fn give(&mut self, request: &ResourceSet) {
        self.cpu_milli += request.cpu_milli;
        self.memory += request.memory;
        for (k, v) in &request.custom {
            *self.custom.entry(k.clone()).or_default() += v;
        }
    }

    /// The first resource of `request` that `self` lacks, for error messages.
    pub fn shortfall(&self, request: &ResourceSet) -> Option<String> {
        if self.cpu_milli < request.cpu_milli {
            return Some(format!(
                "{} CPUs requested, the node has {}",
                request.cpu_milli as f64 / MILLI,
                self.cpu_milli as f64 / MILLI
            ));
        }
        if self.memory < request.memory {
            return Some(format!(
                "{} bytes of memory requested, the node has {}",
                request.memory, self.memory
            ));
        }
        for (k, v) in &request.custom {
            let have = self.custom.get(k).copied().unwrap_or(0);
            if have < *v {
                return Some(format!(
                    "{} of resource `{k}` requested, the node has {}",
                    *v as f64 / MILLI,
                    have as f64 / MILLI
                ));
            }
        }
        None
    }
}

impl fmt::Display for ResourceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={} memory={}",
            self.cpu_milli as f64 / MILLI,
            self.memory
        )?;
        for (k, v) in &self.custom {
            write!(f, " {k}={}", *v as f64 / MILLI)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_cpus_add_up_exactly() {
        let mut free = ResourceSet::new(1.0, 0, &BTreeMap::new()).unwrap();
        let quarter = ResourceSet::new(0.25, 0, &BTreeMap::new()).unwrap();
        for _ in 0..4 {
            assert!(free.fits(&quarter));
            free.take(&quarter);
        }
        assert!(!free.fits(&quarter));
        for _ in 0..4 {
            free.give(&quarter);
        }
        assert_eq!(free.cpu_milli, 1000);
    }

    #[test]
    fn custom_resources_must_exist_to_fit() {
        let node = ResourceSet::new(2.0, 100, &[("ssd".to_string(), 1.0)].into()).unwrap();
        let wants_gpu = ResourceSet::new(0.0, 0, &[("gpu".to_string(), 1.0)].into()).unwrap();
        assert!(!node.fits(&wants_gpu));
        assert!(node.shortfall(&wants_gpu).unwrap().contains("gpu"));
        let wants_ssd = ResourceSet::new(1.0, 50, &[("ssd".to_string(), 1.0)].into()).unwrap();
        assert!(node.fits(&wants_ssd));
        assert!(node.shortfall(&wants_ssd).is_none());
    }

    #[test]
    fn bad_amounts_are_rejected() {
        assert!(to_milli(-1.0).is_err());
        assert!(to_milli(f64::NAN).is_err());
        assert!(to_milli(f64::INFINITY).is_err());
    }
}
