//! TUI latency on the real path: the `oddity triage` binary in a real
//! pseudo-terminal at 200x60. Each timed press is a label key ('n'), and two
//! clocks run from it: one stops when the next candidate (its id, and its
//! cutout: half-block cells or a kitty graphics transmission) has been
//! written to the terminal, what the expert waits for before the next key;
//! the other when the screen says "saved ✓ normal ID" for the labelled
//! object, which it does only once the label's commit (its fsync) returned.
//! Between presses the bench waits as an expert looks (untimed), so the
//! worker can prefetch. p50/p99 for half-blocks and kitty.
//!
//! Then a large store (default 1M objects; the issue's 10M with a third
//! argument of 10000000), generated without pixels (objects, image
//! references and scores only: the cutouts say "pixels unavailable"):
//! time from starting `oddity triage` to the first candidate on the
//! terminal, and the per-key latency there.
//!
//! Usage: cargo bench --bench tui [-- GALAXIES PRESSES SCALE_OBJECTS]
//! (defaults 3000, 200, 1000000; SCALE_OBJECTS 0 skips the large store).
//! ODDITY_BENCH_REFERENCE=BIN also times another `oddity` binary (an older
//! build) on the same store, taking turns with this one, for a ratio.
//! ODDITY_BENCH_BUSY_DISK=1 times the presses while another process's
//! writes keep the disk busy (64 MiB written and fsynced, over and over, in
//! the store's file system), as on a machine shared with other work.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oddity::store::{
    ImageRef, IngestedRow, ObjectKey, ObjectRecord, Payload, ScoreVersion, SourceFile, SourceKind, Store,
};

fn run(cmd: &[&str]) {
    let bin = env!("CARGO_BIN_EXE_oddity");
    let st = std::process::Command::new(bin)
        .args(cmd)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    assert!(st.success(), "{cmd:?}");
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// What the reader thread watches the emulated screen for.
#[derive(Default)]
struct Watch {
    /// Text that must be on the screen (any one of each group), and text
    /// that must not be.
    want: Vec<Vec<String>>,
    not: Vec<String>,
    hit: Option<Instant>,
    /// Text saying a label is on disk, and when it appeared.
    saved: Option<String>,
    saved_hit: Option<Instant>,
}

/// `oddity triage` on a pseudo-terminal, its output fed to a terminal
/// emulator (vt100): ratatui sends only the cells that change, so the
/// screen, not the byte stream, says what the user sees.
struct Pty {
    master: std::fs::File,
    watch: Arc<Mutex<Watch>>,
    screen: Arc<Mutex<String>>,
    child: std::process::Child,
}

impl Pty {
    fn spawn(bin: &Path, store: &Path, graphics: &str, cols: u16, rows: u16) -> Pty {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave_path = name.to_string_lossy().into_owned();
        let slave = std::fs::OpenOptions::new().read(true).write(true).open(&slave_path).expect("open pty slave");
        rustix::termios::tcsetwinsize(
            &slave,
            rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: cols * 10, ws_ypixel: rows * 20 },
        )
        .expect("window size");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["--store", store.to_str().unwrap(), "triage", "--graphics", graphics, "--on-quit", "never"])
            .env("TERM", "xterm-256color")
            .env_remove("TMUX")
            .env_remove("TERM_PROGRAM")
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // The pty becomes the child's controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn oddity triage");
        let master = std::fs::File::from(master);
        let watch = Arc::new(Mutex::new(Watch::default()));
        let screen = Arc::new(Mutex::new(String::new()));
        let (mut reader, w, sc) = (master.try_clone().unwrap(), watch.clone(), screen.clone());
        let mut writer = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut term = vt100::Parser::new(rows, cols, 0);
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                // Answer the capability probe as a kitty terminal would.
                if chunk.windows(5).any(|w| w == b"\x1b[16t") {
                    let _ = writer.write_all(b"\x1b_Gi=31;OK\x1b\\\x1b_Gi=32;OK\x1b\\\x1b[?62;22c\x1b[6;20;10t\x1b[0n");
                }
                term.process(chunk);
                // Look at the screen once a burst of output is read, not
                // after every pty-sized chunk of it.
                let mut fds = [rustix::event::PollFd::new(&reader, rustix::event::PollFlags::IN)];
                let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
                if rustix::event::poll(&mut fds, Some(&zero)).unwrap_or(0) > 0 {
                    continue;
                }
                let mut w = w.lock().unwrap();
                let want_next = !w.want.is_empty() && w.hit.is_none();
                let want_saved = w.saved.is_some() && w.saved_hit.is_none();
                if want_next || want_saved {
                    let now = Instant::now();
                    let text = term.screen().contents();
                    let seen = w.want.iter().all(|any| any.iter().any(|t| text.contains(t.as_str())));
                    if want_next && seen && !w.not.iter().any(|t| text.contains(t.as_str())) {
                        w.hit = Some(now);
                    }
                    if want_saved && w.saved.as_ref().is_some_and(|t| text.contains(t.as_str())) {
                        w.saved_hit = Some(now);
                    }
                    *sc.lock().unwrap() = text;
                }
            }
        });
        Pty { master, watch, screen, child }
    }

    /// Starts watching for a screen with `want` on it and none of `not`.
    fn expect(&self, want: &[&str], not: &[&str]) {
        self.expect_any(&want.iter().map(|s| vec![s.to_string()]).collect::<Vec<_>>(), not);
    }

    /// Starts watching for a screen with one text of each group on it and
    /// none of `not`.
    fn expect_any(&self, want: &[Vec<String>], not: &[&str]) {
        let mut w = self.watch.lock().unwrap();
        w.want = want.to_vec();
        w.not = not.iter().map(|s| s.to_string()).collect();
        w.hit = None;
    }

    /// Also starts watching for `text` (the saved message).
    fn expect_saved(&self, text: String) {
        let mut w = self.watch.lock().unwrap();
        w.saved = Some(text);
        w.saved_hit = None;
    }

    /// When the saved message appeared.
    fn wait_saved(&self, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = self.watch.lock().unwrap().saved_hit {
                return Some(t);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// When the watched-for screen appeared.
    fn wait(&self, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = self.watch.lock().unwrap().hit {
                return Some(t);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn press(&mut self, key: &[u8]) -> Instant {
        let t = Instant::now();
        self.master.write_all(key).unwrap();
        self.master.flush().unwrap();
        t
    }

    fn quit(self) {
        let mut me = self;
        me.press(b"q");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = me.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A bench that fails half-way leaves no triage process behind.
impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Ids of the best candidates, most anomalous first.
fn ranked_ids(store: &Path, n: usize) -> Vec<String> {
    let s = Store::open(store).unwrap();
    s.ranked().unwrap().take(n).map(|r| s.object(r.unwrap().0).unwrap().unwrap().id).collect()
}

/// Times `presses` label keys; returns milliseconds per press to the next
/// candidate, and to the screen saying the label is saved. The next
/// candidate is there when its id is on the screen, its cutout is no longer
/// "loading…", and the status line (the bottom row, the last a frame
/// writes) speaks of the label just given: the whole frame, cutout
/// included, has reached the terminal.
fn label_presses(pty: &mut Pty, ids: &[String], presses: usize, think: Duration) -> (Vec<f64>, Vec<f64>) {
    let mut times = Vec::with_capacity(presses);
    let mut saved = Vec::with_capacity(presses);
    for i in 0..presses {
        std::thread::sleep(think);
        let (saving, on_disk) = (format!("saving ⋯ normal {}", ids[i]), format!("saved ✓ normal {}", ids[i]));
        pty.expect_any(&[vec![ids[i + 1].clone()], vec![saving, on_disk.clone()]], &["loading…"]);
        pty.expect_saved(on_disk);
        let t = pty.press(b"n");
        let done = pty.wait(Duration::from_secs(10)).unwrap_or_else(|| {
            panic!(
                "press {i}: the next candidate {} never reached the screen:\n{}",
                ids[i + 1],
                pty.screen.lock().unwrap()
            )
        });
        times.push(done.duration_since(t).as_secs_f64() * 1e3);
        let on_disk = pty.wait_saved(Duration::from_secs(10)).unwrap_or_else(|| {
            panic!("press {i}: the screen never said {} was saved:\n{}", ids[i], pty.screen.lock().unwrap())
        });
        saved.push(on_disk.duration_since(t).as_secs_f64() * 1e3);
    }
    if std::env::var_os("ODDITY_BENCH_ALL").is_some() {
        println!("{times:.1?}\n{saved:.1?}");
    }
    (times, saved)
}

fn report(what: &str, mut times: Vec<f64>) {
    let max = times.iter().cloned().fold(0.0, f64::max);
    let (p50, p99) = (percentile(&mut times, 0.5), percentile(&mut times, 0.99));
    println!("{what:<40} {:>6} {p50:>8.2} {p99:>8.2} {max:>8.2}", times.len());
}

/// Another process's writes on the store's disk, until dropped.
struct BusyDisk {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BusyDisk {
    fn start(dir: &Path) -> BusyDisk {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, path) = (stop.clone(), dir.join("busy.bin"));
        let thread = std::thread::spawn(move || {
            let block = vec![0x5au8; 64 << 20];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let mut f = std::fs::File::create(&path).unwrap();
                f.write_all(&block).unwrap();
                f.sync_all().unwrap();
            }
            let _ = std::fs::remove_file(&path);
        });
        BusyDisk { stop, thread: Some(thread) }
    }
}

impl Drop for BusyDisk {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A store of `n` image objects without pixels: what ingest and score would
/// leave (objects, ids, image references, a score version), written directly.
fn large_store(path: &Path, n: u64) -> Vec<String> {
    let store = Store::open_or_create(path).unwrap();
    const PER_FILE: u64 = 1_000_000;
    let files = n.div_ceil(PER_FILE);
    let version = store.begin_scores().unwrap();
    let mut top: Vec<(f32, String)> = Vec::new();
    for f in 0..files {
        let rows = PER_FILE.min(n - f * PER_FILE);
        let source = SourceFile {
            path: format!("/nonexistent/large-{f}.hdf5"),
            survey: "hsc".into(),
            sample: "large".into(),
            partition: Some(f),
            kind: SourceKind::Images,
            size: 0,
            mtime: 0,
            n_rows: rows,
            rows_done: rows,
            n_objects: rows,
            n_rejected: 0,
            complete: true,
            columns: vec![],
            array_columns: vec![],
            bands: vec!["g".into(), "r".into(), "i".into()],
            shape: (64, 64),
        };
        let file = store.add_source(&source).unwrap();
        let mut row = 0u64;
        while row < rows {
            let end = (row + 50_000).min(rows);
            let mut batch = Vec::with_capacity((end - row) as usize);
            let mut scores = Vec::with_capacity((end - row) as usize);
            for r in row..end {
                let key = ObjectKey { file, row: r as u32 };
                let id = format!("{}", 80_000_000_000u64 + f * PER_FILE + r);
                // Scores fall with the key, so every tree (objects, ids,
                // scores, the score index) is written in key order, as it
                // is read.
                let score = 0.8 - 0.5 * ((f * PER_FILE + r) as f32 / n as f32);
                if top.len() < 4096 || score > top[0].0 {
                    top.push((score, id.clone()));
                }
                batch.push(IngestedRow {
                    key,
                    object: ObjectRecord {
                        survey: "hsc".into(),
                        id,
                        ra: (r as f64 * 1e-4) % 360.0,
                        dec: 0.0,
                        kind: SourceKind::Images,
                        props: vec![],
                    },
                    payload: Payload::Image(ImageRef {
                        psf_fwhm: vec![],
                        pixel_scale: vec![],
                        bad_fraction: 0.0,
                        band_flux: vec![],
                    }),
                });
                scores.push((key, score));
            }
            store.write_batch(&batch).unwrap();
            store.put_scores(version, &scores).unwrap();
            // Flushed as ingest does: memory stays the engine's page cache.
            if (row / 50_000) % 4 == 3 {
                store.flush().unwrap();
            }
            if top.len() > 8192 {
                top.sort_by(|a, b| a.0.total_cmp(&b.0));
                top.drain(..top.len() - 4096);
            }
            row = end;
        }
    }
    store
        .commit_scores(&ScoreVersion {
            version,
            models: vec![],
            method: "bench".into(),
            time: chrono::Utc::now().to_rfc3339(),
            n_scored: n,
        })
        .unwrap();
    drop(store);
    ranked_ids(path, 2000)
}

/// This process's peak resident memory, as the kernel reports it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l["VmHWM:".len()..].trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let galaxies = arg(0, 3000) as usize;
    let presses = (arg(1, 200) as usize).min(galaxies - 10);
    let scale = arg(2, 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let survey = dir.path().join("survey");
    let store = dir.path().join("store");
    let (sv, st) = (survey.to_str().unwrap(), store.to_str().unwrap());
    run(&["synth", sv, "--galaxies", &galaxies.to_string()]);
    run(&["--store", st, "ingest", sv]);
    run(&["--store", st, "crossmatch"]);
    run(&["--store", st, "features"]);
    run(&["--store", st, "score"]);
    println!(
        "TUI latency: label key → next candidate written to a real pty, and key → \"saved ✓\" (after the \
         label's fsync), 200x60, {presses} presses, {galaxies}-galaxy demo store, 250 ms between presses"
    );
    let this = std::path::PathBuf::from(env!("CARGO_BIN_EXE_oddity"));
    let mut binaries = vec![("", this.clone())];
    if let Some(reference) = std::env::var_os("ODDITY_BENCH_REFERENCE") {
        println!("reference: {}", Path::new(&reference).display());
        binaries.push((" (reference)", reference.into()));
    }
    println!("{:<40} {:>6} {:>8} {:>8} {:>8}", "encoding: clock stops at", "n", "p50 ms", "p99 ms", "max ms");
    let mut p99 = Vec::new();
    let _busy = std::env::var_os("ODDITY_BENCH_BUSY_DISK").map(|_| {
        println!("with the disk kept busy: 64 MiB written and fsynced in a loop beside the store");
        BusyDisk::start(dir.path())
    });
    for graphics in ["halfblocks", "kitty"] {
        for (name, bin) in &binaries {
            // Each run labels the next candidates of the ranking.
            let ids = ranked_ids(&store, presses * (2 * binaries.len() + 1) + 2);
            let done = Store::open(&store).unwrap().label_count();
            let ids = &ids[done..];
            let mut pty = Pty::spawn(bin, &store, graphics, 200, 60);
            pty.expect(&[&ids[0]], &["loading…"]);
            pty.wait(Duration::from_secs(60)).expect("first candidate drawn");
            let (times, saved) = label_presses(&mut pty, ids, presses, Duration::from_millis(250));
            pty.quit();
            p99.push((graphics, *name, percentile(&mut times.clone(), 0.99), percentile(&mut saved.clone(), 0.99)));
            report(&format!("{graphics}{name}: next candidate"), times);
            report(&format!("{graphics}{name}: saved ✓"), saved);
        }
    }
    if binaries.len() == 2 {
        for pair in p99.chunks(2) {
            let (g, _, next, saved) = pair[0];
            let (_, _, ref_next, ref_saved) = pair[1];
            println!(
                "{g}: p99 to the next candidate {next:.1} vs {ref_next:.1} ms ({:.2}x the reference), \
                 to saved ✓ {saved:.1} vs {ref_saved:.1} ms ({:.2}x)",
                next / ref_next,
                saved / ref_saved
            );
        }
    }
    println!("goal: p99 < 30 ms to the next candidate");

    if scale == 0 {
        return;
    }
    // ODDITY_BENCH_LARGE=DIR keeps the large store there between runs.
    let big = std::env::var_os("ODDITY_BENCH_LARGE").map(std::path::PathBuf::from).unwrap_or(dir.path().join("large"));
    let t = Instant::now();
    let ids = if big.join("store.redb").exists() { ranked_ids(&big, 2000) } else { large_store(&big, scale) };
    // A kept store: start after what earlier runs labelled.
    let done = Store::open(&big).unwrap().label_count();
    let ids = ids[done..].to_vec();
    println!();
    println!(
        "{} objects without pixels (generated in {:.0} s, {:.1} GB on disk; this bench's peak RSS {})",
        oddity_thousands(scale),
        t.elapsed().as_secs_f64(),
        dir_size(&big) as f64 / 1e9,
        peak_rss()
    );
    let t = Instant::now();
    run(&["--store", big.to_str().unwrap(), "status"]);
    println!("opening it (`oddity status`): {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let mut pty = Pty::spawn(&this, &big, "halfblocks", 200, 60);
    pty.expect(&[&ids[0]], &[]);
    let first = pty.wait(Duration::from_secs(120)).expect("first candidate");
    println!("time to first candidate: {:.0} ms (goal < 1000 ms)", first.duration_since(t).as_secs_f64() * 1e3);
    println!("{:<40} {:>6} {:>8} {:>8} {:>8}", "per label key: clock stops at", "n", "p50 ms", "p99 ms", "max ms");
    let n = presses.min(ids.len() - 2);
    let (times, saved) = label_presses(&mut pty, &ids, n, Duration::from_millis(100));
    pty.quit();
    report(&format!("{}: next candidate", oddity_thousands(scale)), times);
    report(&format!("{}: saved ✓", oddity_thousands(scale)), saved);
}

fn oddity_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn dir_size(p: &Path) -> u64 {
    walkdir::WalkDir::new(p).into_iter().filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}
