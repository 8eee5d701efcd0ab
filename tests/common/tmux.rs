//! Driving the real binary in a private tmux server: fixed size, keys in,
//! screen out, polled (no fixed sleeps).
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
    /// The wrapper shell writes the program's exit status here.
    status_file: std::path::PathBuf,
}

impl Tmux {
    /// Starts `command` (argv, run without a shell) in a new session.
    pub fn start(name: &str, width: u16, height: u16, command: &[&str], env: &[(&str, &str)]) -> Tmux {
        let socket = format!("oddity-test-{name}-{}", std::process::id());
        let status_file = std::env::temp_dir().join(format!("{socket}.status"));
        let _ = std::fs::remove_file(&status_file);
        let t = Tmux { socket, status_file };
        let mut args: Vec<String> = vec!["new-session".into(), "-d".into(), "-s".into(), "main".into()];
        args.extend(["-x".into(), width.to_string(), "-y".into(), height.to_string()]);
        for (k, v) in env {
            args.extend(["-e".into(), format!("{k}={v}")]);
        }
        // A shell records the exit status ($? is 128 + signal after a kill):
        // tmux's own pane_dead_status is not reliably filled in.
        args.extend([
            "sh".into(),
            "-c".into(),
            format!("\"$@\"; echo $? > '{}'", t.status_file.display()),
            "sh".into(),
        ]);
        args.extend(command.iter().map(|s| s.to_string()));
        let _g = super::fork_guard();
        let out =
            Command::new("tmux").args(["-L", &t.socket, "-f", "/dev/null"]).args(&args).output().expect("tmux runs");
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        // Keep the pane after the program exits so its output can be read.
        t.tmux(&["set-option", "-t", "main", "remain-on-exit", "on"]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket]).args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    pub fn screen(&self) -> String {
        // With history: text printed after the program leaves the alternate
        // screen may have scrolled (e.g. after a resize).
        self.tmux(&["capture-pane", "-p", "-S", "-200", "-t", "main"])
    }

    pub fn resize(&self, width: u16, height: u16) {
        self.tmux(&["resize-window", "-t", "main", "-x", &width.to_string(), "-y", &height.to_string()]);
    }

    /// Polls the screen until it contains `text`; panics with the screen after `secs`.
    pub fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {text:?}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until `text` is no longer on the screen.
    pub fn wait_until_gone(&self, text: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.screen().contains(text) {
            if Instant::now() > deadline {
                panic!("{text:?} still on screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of the program (the wrapper shell's child).
    pub fn pid(&self) -> u32 {
        let shell: u32 =
            self.tmux(&["list-panes", "-t", "main", "-F", "#{pane_pid}"]).trim().parse().expect("pane pid");
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the program runs under the wrapper shell")
    }

    /// Exit status once the program has ended (128 + signal when killed).
    pub fn wait_exit(&self, secs: u64) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(code) = std::fs::read_to_string(&self.status_file).ok().and_then(|s| s.trim().parse().ok()) {
                return code;
            }
            if Instant::now() > deadline {
                panic!("program did not exit; screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
        let _ = std::fs::remove_file(&self.status_file);
    }
}
