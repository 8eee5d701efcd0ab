//! Driving the real binary in a private tmux server: fixed size, keys in,
//! screen out, polled (no fixed sleeps).
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (argv, run without a shell) in a new session.
    pub fn start(name: &str, width: u16, height: u16, command: &[&str], env: &[(&str, &str)]) -> Tmux {
        let socket = format!("oddity-test-{name}-{}", std::process::id());
        let t = Tmux { socket };
        let mut args: Vec<String> = vec!["new-session".into(), "-d".into(), "-s".into(), "main".into()];
        args.extend(["-x".into(), width.to_string(), "-y".into(), height.to_string()]);
        for (k, v) in env {
            args.extend(["-e".into(), format!("{k}={v}")]);
        }
        args.extend(command.iter().map(|s| s.to_string()));
        let _g = super::fork_guard();
        let out = Command::new("tmux").args(["-L", &t.socket, "-f", "/dev/null"]).args(&args).output().expect("tmux runs");
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

    /// The pid of the program in the pane.
    pub fn pid(&self) -> u32 {
        self.tmux(&["list-panes", "-t", "main", "-F", "#{pane_pid}"]).trim().parse().expect("pane pid")
    }

    /// Exit status once the program has ended.
    pub fn wait_exit(&self, secs: u64) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let dead = self.tmux(&["list-panes", "-t", "main", "-F", "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}"]);
            let parts: Vec<&str> = dead.trim().split('|').collect();
            if parts.first() == Some(&"1") {
                // A death by signal reads as 128 + signal, like a shell's $?.
                if let Some(sig) = parts.get(2).and_then(|s| s.parse::<i32>().ok()).filter(|s| *s > 0) {
                    return 128 + sig;
                }
                return parts.get(1).and_then(|s| s.parse().ok()).unwrap_or(-1);
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
    }
}
