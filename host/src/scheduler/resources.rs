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

/// A resource request that is not well formed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ResourceError {
    /// An amount that is negative or not finite.
    #[error("resource amounts must be finite and non-negative, got {0}")]
    BadAmount(f64),
    /// `memory` that is not a byte count.
    #[error("memory must be a byte count, got {0}")]
    BadMemory(f64),
    /// More than one GPU, but not a whole number of them.
    #[error("num_gpus above 1 must be a whole number, got {0}")]
    FractionalGpus(f64),
    /// GPUs named as a custom resource.
    #[error("request GPUs with num_gpus, not as the `{0}` resource")]
    GpuByName(String),
    /// GPUs in a placement-group bundle.
    #[error("bundles cannot hold GPUs yet")]
    GpuInBundle,
    /// A placement-group bundle that holds nothing.
    #[error("a bundle must hold some resource")]
    EmptyBundle,
}

/// Converts a user-facing amount to thousandths; negative and non-finite
/// amounts are errors.
pub fn to_milli(amount: f64) -> Result<u64, ResourceError> {
    if !amount.is_finite() || amount < 0.0 {
        return Err(ResourceError::BadAmount(amount));
    }
    Ok((amount * MILLI).round() as u64)
}

impl ResourceSet {
    /// A set with `cpus` CPUs, `memory` bytes and the given custom amounts.
    pub fn new(
        cpus: f64,
        memory: u64,
        custom: &BTreeMap<String, f64>,
    ) -> Result<Self, ResourceError> {
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

    /// The `GPU` amount in thousandths.
    pub fn gpu_milli(&self) -> u64 {
        self.custom
            .get(prism_abi::gpu::GPU_RESOURCE)
            .copied()
            .unwrap_or(0)
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
        // Saturating: sums of requests a guest chose must not wrap.
        self.cpu_milli = self.cpu_milli.saturating_add(request.cpu_milli);
        self.memory = self.memory.saturating_add(request.memory);
        for (k, v) in &request.custom {
            let have = self.custom.entry(k.clone()).or_default();
            *have = have.saturating_add(*v);
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

/// Which share of which device a holder of GPUs got: `(device index,
/// thousandths)`.
pub type GpuAssignment = Vec<(usize, u64)>;

/// Per-device GPU accounting. The aggregate `GPU` amount in a
/// [`ResourceSet`] says how much is free in total; this says where, so that
/// a fractional request lands on one device and a whole-device request gets
/// devices of its own (as in Ray).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuShares {
    /// Free thousandths per device.
    free: Vec<u64>,
}

impl GpuShares {
    /// `devices` whole, free devices.
    pub fn new(devices: usize) -> Self {
        GpuShares {
            free: vec![MILLI as u64; devices],
        }
    }

    /// Checks the shape of a request: a fraction of one device, or a whole
    /// number of devices.
    pub fn validate(milli: u64) -> Result<(), ResourceError> {
        if milli > MILLI as u64 && !milli.is_multiple_of(MILLI as u64) {
            return Err(ResourceError::FractionalGpus(milli as f64 / MILLI));
        }
        Ok(())
    }

    /// Takes `milli` thousandths: below one device, from the fullest device
    /// it fits on (best fit keeps whole devices free for whole requests);
    /// otherwise whole free devices. `None` if it does not fit now.
    pub fn take(&mut self, milli: u64) -> Option<GpuAssignment> {
        if milli == 0 {
            return Some(Vec::new());
        }
        let whole = MILLI as u64;
        if milli <= whole {
            let (index, _) = self
                .free
                .iter()
                .enumerate()
                .filter(|(_, free)| **free >= milli)
                .min_by_key(|(_, free)| **free)?;
            self.free[index] -= milli;
            return Some(vec![(index, milli)]);
        }
        let wanted = (milli / whole) as usize;
        let devices: Vec<usize> = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, free)| **free == whole)
            .map(|(i, _)| i)
            .take(wanted)
            .collect();
        if devices.len() < wanted {
            return None;
        }
        for &i in &devices {
            self.free[i] = 0;
        }
        Some(devices.into_iter().map(|i| (i, whole)).collect())
    }

    /// Whether [`GpuShares::take`] of `milli` would succeed now.
    pub fn can_take(&self, milli: u64) -> bool {
        milli == 0 || self.clone().take(milli).is_some()
    }

    /// Gives an assignment back.
    pub fn give(&mut self, assignment: &[(usize, u64)]) {
        for &(index, milli) in assignment {
            if let Some(free) = self.free.get_mut(index) {
                *free = (*free + milli).min(MILLI as u64);
            }
        }
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
    fn fractional_gpus_pack_onto_one_device_and_whole_ones_do_not_share() {
        let mut gpus = GpuShares::new(2);
        let quarter = to_milli(0.25).unwrap();
        // Four quarters fill device 0 before device 1 is touched.
        let mut held = Vec::new();
        for _ in 0..4 {
            let a = gpus.take(quarter).unwrap();
            assert_eq!(a, vec![(0, 250)]);
            held.push(a);
        }
        // Device 1 is whole: a whole-device request gets it.
        let whole = gpus.take(1000).unwrap();
        assert_eq!(whole, vec![(1, 1000)]);
        assert_eq!(gpus.take(quarter), None);
        gpus.give(&whole);
        // Two devices at once need two free devices.
        assert_eq!(gpus.take(2000), None);
        for a in &held {
            gpus.give(a);
        }
        assert_eq!(gpus.take(2000).unwrap(), vec![(0, 1000), (1, 1000)]);
    }

    #[test]
    fn a_half_free_device_is_preferred_for_fractions() {
        let mut gpus = GpuShares::new(2);
        gpus.take(1000).unwrap();
        gpus.give(&[(0, 500)]);
        // Device 0 has 0.5 free and device 1 is whole: best fit picks 0.
        assert_eq!(gpus.take(500).unwrap(), vec![(0, 500)]);
        assert_eq!(gpus.take(1000).unwrap(), vec![(1, 1000)]);
    }

    #[test]
    fn gpu_requests_above_one_must_be_whole() {
        assert!(GpuShares::validate(250).is_ok());
        assert!(GpuShares::validate(1000).is_ok());
        assert!(GpuShares::validate(3000).is_ok());
        assert_eq!(
            GpuShares::validate(1500),
            Err(ResourceError::FractionalGpus(1.5))
        );
        assert!(
            ResourceError::FractionalGpus(1.5)
                .to_string()
                .contains("whole number")
        );
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
        assert_eq!(to_milli(-1.0), Err(ResourceError::BadAmount(-1.0)));
        assert!(to_milli(f64::NAN).is_err());
        assert!(to_milli(f64::INFINITY).is_err());
    }
}
