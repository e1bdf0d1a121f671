//! The fake wall clocks of a cluster's processes (see [`FakeClock`]): each coordinator
//! and worker of a cluster started by [`HaCluster::start_on_fake_clocks`] reads its own,
//! so that a test steps one process's clock as NTP would step one machine's.

use std::collections::BTreeMap;

use super::HaCluster;
use crate::clock::FakeClock;

impl HaCluster {
    /// Puts every coordinator and worker started from now on on a wall clock of its own
    /// that the test can step; false when libfaketime is not installed (see
    /// [`FakeClock`]).
    pub(super) fn put_processes_on_fake_clocks(&mut self) -> bool {
        if FakeClock::available() {
            self.clocks.get_or_insert_with(BTreeMap::new);
        }
        self.clocks.is_some()
    }

    /// The variables that put process `name` on a fake clock of its own, if processes
    /// start on fake clocks.
    pub(super) fn clock_env(&mut self, name: &str) -> Vec<(String, String)> {
        let offset_file = self.path(&format!("{name}.clock"));
        let Some(clocks) = &mut self.clocks else {
            return Vec::new();
        };
        let clock = FakeClock::new(offset_file).expect("the clock file can be written");
        let env = clock.env();
        clocks.insert(name.to_string(), clock);
        env
    }

    /// Steps the wall clock of coordinator `index` by `secs` (see [`FakeClock::jump`]);
    /// false when it runs on the true clock (or does not run).
    pub fn jump_coordinator_clock(&mut self, index: usize, secs: i64) -> bool {
        let Some(name) = self.coordinators[index].as_ref().map(|p| p.name.clone()) else {
            return false;
        };
        self.jump_clock(&name, secs)
    }

    /// Steps the wall clock of running worker `index` by `secs`; false when it runs on
    /// the true clock.
    pub fn jump_worker_clock(&mut self, index: usize, secs: i64) -> bool {
        let name = self.workers[index].name.clone();
        self.jump_clock(&name, secs)
    }

    fn jump_clock(&mut self, name: &str, secs: i64) -> bool {
        let Some(clock) = self.clocks.as_mut().and_then(|clocks| clocks.get_mut(name)) else {
            return false;
        };
        clock.jump(secs).expect("the clock file can be written");
        true
    }

    /// Tells whether the processes run on fake clocks.
    pub fn on_fake_clocks(&self) -> bool {
        self.clocks.is_some()
    }
}
