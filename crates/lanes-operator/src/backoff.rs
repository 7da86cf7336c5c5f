//! The error policy's back-off, shared by both controllers: failures in a row are
//! counted per object, and each retry waits 1 s, doubling, at most a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

/// The wait after `failures` failures in a row: 1 s, doubling, at most a minute.
pub fn back_off(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    Duration::from_secs(1 << doublings).min(Duration::from_secs(60))
}

/// Failures in a row, per object.
pub(crate) struct Failures<K: Resource<DynamicType = ()>>(Mutex<HashMap<ObjectRef<K>, u32>>);

impl<K: Resource<DynamicType = ()>> Failures<K> {
    pub(crate) fn new() -> Self {
        Failures(Mutex::new(HashMap::new()))
    }

    /// A reconcile of `o` succeeded: its count starts again.
    pub(crate) fn succeeded(&self, o: &K) {
        if let Ok(mut f) = self.0.lock() {
            f.remove(&ObjectRef::from_obj(o));
        }
    }

    /// A reconcile of `o` failed: its failures in a row, and how long to wait.
    pub(crate) fn failed(&self, o: &K) -> (u32, Duration) {
        let n = match self.0.lock() {
            Ok(mut f) => {
                let n = f.entry(ObjectRef::from_obj(o)).or_insert(0);
                *n += 1;
                *n
            }
            Err(_) => 1,
        };
        (n, back_off(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_model::rollout::Rollout;

    #[test]
    fn failures_back_off_from_a_second_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| back_off(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn failures_are_counted_per_object_and_a_success_starts_again() {
        let named = |name: &str| {
            let mut r: Rollout = serde_json::from_value(serde_json::json!({
                "apiVersion": "rollouts.kruise.io/v1beta1", "kind": "Rollout",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
                         "strategy": {}}}))
            .unwrap();
            r.metadata.name = Some(name.into());
            r
        };
        let (a, b) = (named("a"), named("b"));
        let f = Failures::new();
        assert_eq!(f.failed(&a), (1, Duration::from_secs(1)));
        assert_eq!(f.failed(&a), (2, Duration::from_secs(2)));
        assert_eq!(f.failed(&b).0, 1, "another object counts apart");
        f.succeeded(&a);
        assert_eq!(f.failed(&a).0, 1);
    }
}
