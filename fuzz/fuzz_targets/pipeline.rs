//! AFL target `pipeline`: see `supportd_fuzz::pipeline`. The world (config, default triage
//! rules, templates) is built once, before AFL's fork server starts (deferred mode), so the
//! ~350 ms the rule automata take is paid once per run, not once per input.
fn main() {
    // A panic aborts the process (AFL's crash); nothing observes the world after one.
    let world = std::panic::AssertUnwindSafe(supportd_fuzz::World::new());
    afl::fuzz!(|data: &[u8]| {
        supportd_fuzz::pipeline(&world, data);
    });
}
