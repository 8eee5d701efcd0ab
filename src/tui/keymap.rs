//! Keys → actions. Defaults are embedded (assets/keymap.toml); a user file
//! overrides any action's keys. Every action has a description that feeds the
//! help overlay.

use std::collections::{BTreeMap, HashMap};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Everything a key can ask for in the normal (browsing) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Relevance(u8),
    Anomaly,
    Normal,
    Unsure,
    Favourite,
    Undo,
    Next,
    Previous,
    Tag,
    Jump,
    Filter,
    Ordering,
    Band,
    Stretch,
    Zoom,
    CopyLink,
    RestFrame,
    Gallery,
    Up,
    Down,
    PageDown,
    PageUp,
    PageNormal,
    Histogram,
    Bpt,
    Help,
    Quit,
}

/// Config names, in help order, with their descriptions.
pub const ACTIONS: &[(&str, Action, &str)] = &[
    ("relevance_0", Action::Relevance(0), "relevance 0 (boring)"),
    ("relevance_1", Action::Relevance(1), "relevance 1"),
    ("relevance_2", Action::Relevance(2), "relevance 2"),
    ("relevance_3", Action::Relevance(3), "relevance 3"),
    ("relevance_4", Action::Relevance(4), "relevance 4"),
    ("relevance_5", Action::Relevance(5), "relevance 5 (most interesting)"),
    ("anomaly", Action::Anomaly, "label anomaly"),
    ("normal", Action::Normal, "label normal"),
    ("unsure", Action::Unsure, "label unsure"),
    ("favourite", Action::Favourite, "star / unstar as favourite"),
    ("undo", Action::Undo, "undo the last label of this session"),
    ("next", Action::Next, "next candidate"),
    ("previous", Action::Previous, "previous candidate"),
    ("tag", Action::Tag, "tag: merger, ring, lens, artefact, other, custom"),
    ("jump", Action::Jump, "jump to an object id"),
    ("filter", Action::Filter, "filter: all, unlabelled, labelled, favourites, tag, BPT class"),
    ("ordering", Action::Ordering, "ordering: score, id, random, recently labelled, most uncertain"),
    ("band", Action::Band, "cycle colour composite / single bands"),
    ("stretch", Action::Stretch, "cycle stretch (asinh, log, sqrt, linear)"),
    ("zoom", Action::Zoom, "zoom 1x / 2x / 4x"),
    ("copy_link", Action::CopyLink, "copy a Legacy Survey sky-viewer link (OSC 52)"),
    ("rest_frame", Action::RestFrame, "spectrum in rest / observed wavelength"),
    ("gallery", Action::Gallery, "gallery grid on / off"),
    ("up", Action::Up, "gallery: row up"),
    ("down", Action::Down, "gallery: row down"),
    ("page_down", Action::PageDown, "next page (gallery) / 10 ahead"),
    ("page_up", Action::PageUp, "previous page (gallery) / 10 back"),
    ("page_normal", Action::PageNormal, "gallery: label every unlabelled object on the page normal"),
    ("histogram", Action::Histogram, "score histogram with labels marked"),
    ("bpt", Action::Bpt, "BPT diagram: the survey's spectra, this object marked"),
    ("help", Action::Help, "this help"),
    ("quit", Action::Quit, "quit (once every label is saved)"),
];

const DEFAULT_KEYMAP: &str = include_str!("../../assets/keymap.toml");

#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("keymap {file}: {why}")]
    Invalid { file: String, why: String },
}

/// A key with its modifiers, comparable with crossterm's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub fn from_event(e: &KeyEvent) -> Key {
        // Shift is part of the character for printable keys ("?" not "shift-/").
        let mods = match e.code {
            KeyCode::Char(_) | KeyCode::BackTab => e.modifiers - KeyModifiers::SHIFT,
            _ => e.modifiers,
        };
        Key { code: e.code, mods }
    }
}

/// Parses "a", "?", "ctrl-c", "left", "f1", "shift-tab".
pub fn parse_key(text: &str) -> Result<Key, String> {
    let mut mods = KeyModifiers::NONE;
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("ctrl-") {
            mods |= KeyModifiers::CONTROL;
            rest = &rest[rest.len() - r.len()..];
        } else if let Some(r) = lower.strip_prefix("alt-") {
            mods |= KeyModifiers::ALT;
            rest = &rest[rest.len() - r.len()..];
        } else if let Some(r) = lower.strip_prefix("shift-") {
            mods |= KeyModifiers::SHIFT;
            rest = &rest[rest.len() - r.len()..];
        } else {
            break;
        }
    }
    let code = match rest.to_ascii_lowercase().as_str() {
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "enter" | "return" => KeyCode::Enter,
        "esc" | "escape" => KeyCode::Esc,
        "tab" if mods.contains(KeyModifiers::SHIFT) => {
            mods -= KeyModifiers::SHIFT;
            KeyCode::BackTab
        }
        "tab" => KeyCode::Tab,
        "backspace" => KeyCode::Backspace,
        "space" => KeyCode::Char(' '),
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "delete" | "del" => KeyCode::Delete,
        f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
            KeyCode::F(f[1..].parse().map_err(|_| format!("bad function key `{text}`"))?)
        }
        _ => {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => KeyCode::Char(c),
                _ => return Err(format!("unknown key `{text}`")),
            }
        }
    };
    Ok(Key { code, mods })
}

/// Shows a key the way the help overlay and status bar print it.
pub fn key_name(key: &Key) -> String {
    let mut s = String::new();
    if key.mods.contains(KeyModifiers::CONTROL) {
        s.push_str("ctrl-");
    }
    if key.mods.contains(KeyModifiers::ALT) {
        s.push_str("alt-");
    }
    match key.code {
        KeyCode::Char(' ') => s.push_str("space"),
        KeyCode::Char(c) => s.push(c),
        KeyCode::Left => s.push('←'),
        KeyCode::Right => s.push('→'),
        KeyCode::Up => s.push('↑'),
        KeyCode::Down => s.push('↓'),
        KeyCode::F(n) => s.push_str(&format!("F{n}")),
        other => s.push_str(&format!("{other:?}").to_lowercase()),
    }
    s
}

#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: HashMap<Key, Action>,
    /// Keys per action, for the help overlay.
    keys: BTreeMap<usize, Vec<Key>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeymapFile {
    #[serde(default)]
    keys: BTreeMap<String, Vec<String>>,
}

impl Keymap {
    /// The embedded defaults.
    pub fn default_keys() -> Keymap {
        Keymap::from_toml(DEFAULT_KEYMAP, "built-in keymap", None).expect("the built-in keymap parses")
    }

    /// Defaults overridden by the user's TOML (actions it names get exactly
    /// the keys it lists).
    pub fn with_overrides(text: &str, file: &str) -> Result<Keymap, KeymapError> {
        let base = Keymap::default_keys();
        Keymap::from_toml(text, file, Some(base))
    }

    fn from_toml(text: &str, file: &str, base: Option<Keymap>) -> Result<Keymap, KeymapError> {
        let invalid = |why: String| KeymapError::Invalid { file: file.to_string(), why };
        let parsed: KeymapFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut keys: BTreeMap<usize, Vec<Key>> = base.map(|b| b.keys).unwrap_or_default();
        for (name, list) in &parsed.keys {
            let index = ACTIONS
                .iter()
                .position(|(n, _, _)| n == name)
                .ok_or_else(|| invalid(format!("unknown action `{name}` (known: {})", action_names())))?;
            let mut parsed_keys = Vec::new();
            for k in list {
                parsed_keys.push(parse_key(k).map_err(|e| invalid(format!("{name}: {e}")))?);
            }
            keys.insert(index, parsed_keys);
        }
        let mut bindings = HashMap::new();
        for (&index, list) in &keys {
            for key in list {
                if let Some(prev) = bindings.insert(*key, ACTIONS[index].1)
                    && prev != ACTIONS[index].1
                {
                    let other = ACTIONS.iter().find(|a| a.1 == prev).map(|a| a.0).unwrap_or("?");
                    return Err(invalid(format!(
                        "key `{}` is bound to both `{other}` and `{}`",
                        key_name(key),
                        ACTIONS[index].0
                    )));
                }
            }
        }
        Ok(Keymap { bindings, keys })
    }

    pub fn action(&self, event: &KeyEvent) -> Option<Action> {
        self.bindings.get(&Key::from_event(event)).copied()
    }

    /// (keys, description) lines for the help overlay, in a stable order.
    pub fn help(&self) -> Vec<(String, &'static str)> {
        ACTIONS
            .iter()
            .enumerate()
            .map(|(i, (_, _, desc))| {
                let keys =
                    self.keys.get(&i).map(|k| k.iter().map(key_name).collect::<Vec<_>>().join(" ")).unwrap_or_default();
                (keys, *desc)
            })
            .collect()
    }

    /// The first key bound to an action, for hints in the status bar.
    pub fn key_for(&self, action: Action) -> Option<String> {
        let i = ACTIONS.iter().position(|a| a.1 == action)?;
        self.keys.get(&i)?.first().map(key_name)
    }
}

fn action_names() -> String {
    ACTIONS.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn defaults_cover_every_action() {
        let km = Keymap::default_keys();
        for (name, action, _) in ACTIONS {
            assert!(km.key_for(*action).is_some(), "{name} has no key");
        }
        assert_eq!(km.action(&press(KeyCode::Char('a'))), Some(Action::Anomaly));
        assert_eq!(km.action(&press(KeyCode::Char('5'))), Some(Action::Relevance(5)));
        assert_eq!(km.action(&press(KeyCode::Right)), Some(Action::Next));
        assert_eq!(km.action(&press(KeyCode::Char('h'))), Some(Action::Previous));
        assert_eq!(km.action(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Action::Quit));
        assert_eq!(km.action(&KeyEvent::new(KeyCode::Char('?'), KeyModifiers::SHIFT)), Some(Action::Help));
        assert_eq!(km.action(&press(KeyCode::Char('w'))), None);
    }

    #[test]
    fn user_overrides_replace_an_actions_keys() {
        let km = Keymap::with_overrides("[keys]\nanomaly = [\"w\"]\nnext = [\"m\", \"end\"]\n", "mine.toml").unwrap();
        assert_eq!(km.action(&press(KeyCode::Char('w'))), Some(Action::Anomaly));
        assert_eq!(km.action(&press(KeyCode::Char('a'))), None, "old key freed");
        assert_eq!(km.action(&press(KeyCode::End)), Some(Action::Next));
        assert_eq!(km.action(&press(KeyCode::Char('l'))), None, "next's old keys freed");
        assert_eq!(km.action(&press(KeyCode::Char('n'))), Some(Action::Normal), "others keep defaults");
    }

    #[test]
    fn bad_keymaps_say_what_is_wrong() {
        let e = Keymap::with_overrides("[keys]\nfly = [\"f\"]\n", "mine.toml").unwrap_err().to_string();
        assert!(e.contains("mine.toml") && e.contains("unknown action `fly`"), "{e}");
        let e = Keymap::with_overrides("[keys]\nanomaly = [\"hello\"]\n", "mine.toml").unwrap_err().to_string();
        assert!(e.contains("unknown key `hello`"), "{e}");
        let e = Keymap::with_overrides("[keys]\nanomaly = [\"n\"]\n", "mine.toml").unwrap_err().to_string();
        assert!(e.contains("bound to both"), "{e}");
        let e = Keymap::with_overrides("[keys\n", "mine.toml").unwrap_err().to_string();
        assert!(e.contains("mine.toml"), "{e}");
        // A misspelt table is an error, not silently ignored.
        let e = Keymap::with_overrides("[keyz]\nanomaly = [\"w\"]\n", "mine.toml").unwrap_err().to_string();
        assert!(e.contains("mine.toml") && e.contains("keyz"), "{e}");
    }

    #[test]
    fn key_parsing() {
        assert_eq!(parse_key("ctrl-c").unwrap(), Key { code: KeyCode::Char('c'), mods: KeyModifiers::CONTROL });
        assert_eq!(parse_key("F1").unwrap().code, KeyCode::F(1));
        assert_eq!(parse_key("shift-tab").unwrap(), Key { code: KeyCode::BackTab, mods: KeyModifiers::NONE });
        assert_eq!(parse_key("space").unwrap().code, KeyCode::Char(' '));
        assert!(parse_key("").is_err());
    }
}
