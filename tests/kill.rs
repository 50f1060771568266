//! Kill anywhere (issue 8): SIGKILL the generator at 200 moments spread over
//! a run on a realistic root, and check after each kill that no drop-in is
//! half-written and that, once the blocking drop-ins are all written, every
//! annotated unit is blocked or fully confined — never open.
//!
//! The generator's first act on the output is to write a blocking drop-in
//! for every annotated unit; before the first of those writes nothing is
//! there yet, and while they are being written some units are blocked and
//! others not yet: one directory entry per unit cannot be created atomically.
//! The test reports how many kills landed in that window.

mod support;

use std::collections::BTreeMap;
use std::time::Instant;
use support::{TestRoot, store_path};

const ANNOTATED: usize = 40;
const PLAIN: usize = 150;
const KILLS: usize = 200;

fn realistic_root() -> (TestRoot, Vec<String>) {
    let root = TestRoot::new("kill");
    // A layered graph: a base everybody uses, libraries, applications.
    let base: Vec<String> = (0..20).map(|i| store_path(i, "base")).collect();
    let libs: Vec<String> = (0..200).map(|i| store_path(1000 + i, "lib")).collect();
    let apps: Vec<String> = (0..ANNOTATED + PLAIN)
        .map(|i| store_path(5000 + i as u64, "app"))
        .collect();
    let mut registrations: Vec<(String, Vec<String>)> = Vec::new();
    for (i, b) in base.iter().enumerate() {
        registrations.push((b.clone(), base[..i].to_vec()));
    }
    for (i, l) in libs.iter().enumerate() {
        let mut refs = base.clone();
        refs.extend(libs[i.saturating_sub(8)..i].iter().cloned());
        registrations.push((l.clone(), refs));
    }
    for (i, a) in apps.iter().enumerate() {
        let refs: Vec<String> = (0..12)
            .map(|k| libs[(i * 7 + k * 13) % libs.len()].clone())
            .collect();
        registrations.push((a.clone(), refs));
    }
    let borrowed: Vec<(&str, Vec<&str>)> = registrations
        .iter()
        .map(|(p, r)| (p.as_str(), r.iter().map(String::as_str).collect()))
        .collect();
    let slices: Vec<(&str, &[&str])> = borrowed.iter().map(|(p, r)| (*p, r.as_slice())).collect();
    root.register(&slices);
    let mut annotated = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let name = format!("svc-{i:03}.service");
        let annotation = if i < ANNOTATED {
            "X-ConfinementEnable=yes\n"
        } else {
            ""
        };
        let dir = if i % 2 == 0 {
            "/etc/systemd/system"
        } else {
            "/usr/lib/systemd/system"
        };
        root.write(
            &format!("{dir}/{name}"),
            &format!(
                "[Unit]\nDescription=Service {i}\nAfter=network.target\n\n[Service]\nExecStart={app}/bin/app --serve\n{annotation}\n[Install]\nWantedBy=multi-user.target\n"
            ),
        );
        if i < ANNOTATED {
            annotated.push(name);
        }
    }
    (root, annotated)
}

#[derive(Debug, Default)]
struct Tally {
    nothing_written: usize,
    during_blocking_phase: usize,
    all_blocked_or_confined: usize,
    fully_finished: usize,
}

#[test]
fn killing_the_generator_anywhere_never_leaves_a_half_written_or_open_unit() {
    let (root, annotated) = realistic_root();
    // The reference: what a complete run writes.
    let reference = root.generate();
    assert_eq!(reference.status, 0, "{}", reference.stderr);
    let finals: BTreeMap<String, String> = annotated
        .iter()
        .map(|u| (u.clone(), root.dropin(u)))
        .collect();
    let mut durations = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        root.generate();
        durations.push(started.elapsed());
    }
    durations.sort();
    let run_time = durations[2];

    let mut tally = Tally::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Spread the kills over 0–120 % of a normal run.
        let delay = run_time.mul_f64((seed % 1200) as f64 / 1000.0);
        let _ = std::fs::remove_dir_all(&root.out);
        std::fs::create_dir_all(&root.out).unwrap();
        let mut child = std::process::Command::new(support::GENERATOR)
            .arg("--root")
            .arg(&root.dir)
            .arg(&root.out)
            .env("SYSTEMD_LOG_TARGET", "console")
            .env("SYSTEMD_LOG_LEVEL", "emerg")
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();

        let mut present = 0;
        let mut finished = 0;
        for unit in &annotated {
            let path = root.out.join(format!("{unit}.d/zz-confinement.conf"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            present += 1;
            if text == finals[unit] {
                finished += 1;
            } else {
                // Anything else must be the complete blocking drop-in.
                assert!(
                    text.starts_with("# Generated by nix-confinement-generator: ")
                        && text.contains("\n[Unit]\n")
                        && text.contains("\nAssertPathExists=!/\n")
                        && text.ends_with("did not finish computing the confinement\n"),
                    "{unit} half-written or open after a kill at {delay:?}:\n{text}"
                );
            }
        }
        match present {
            0 => tally.nothing_written += 1,
            n if n < annotated.len() => tally.during_blocking_phase += 1,
            _ if finished == annotated.len() => tally.fully_finished += 1,
            _ => tally.all_blocked_or_confined += 1,
        }
    }
    eprintln!("run time {run_time:?}; after {KILLS} kills: {tally:?}");
    assert_eq!(
        tally.nothing_written
            + tally.during_blocking_phase
            + tally.all_blocked_or_confined
            + tally.fully_finished,
        KILLS
    );
    // The kills must really have landed inside runs, not only before or after.
    assert!(tally.all_blocked_or_confined > 0, "{tally:?}");
}
