//! The terminal capability probe, done so that no keypress is lost.
//!
//! ratatui-image's `Picker::from_query_stdio` reads stdin on a thread of its
//! own and throws away every byte that is not a reply; when the terminal does
//! not answer (tmux without passthrough) that thread stays blocked in `read`
//! after the timeout and eats the next keypress, seconds later (ratatui-image
//! #202). Here the queries are written and the replies read on the calling
//! thread, with `poll` and a deadline, before the input thread exists; bytes
//! that are not replies are keys the user typed meanwhile, decoded and handed
//! back to be replayed first. crossterm's own byte parser is private, hence
//! the small decoder below for the keys a labeller types.
//!
//! The queries go to the terminal we run in, not wrapped for tmux: inside
//! tmux, tmux itself answers (sixel when it was built with it), so the probe
//! never waits on an outer terminal that may not answer, and no late reply
//! can arrive after the input thread starts and be read as keys. Kitty or
//! iTerm2 graphics through tmux passthrough are chosen with `--graphics`.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_image::FontSize;
use ratatui_image::picker::{Picker, ProtocolType};

use super::Graphics;

/// What the probe learnt, and the keys typed while it ran.
pub struct Probe {
    pub picker: Picker,
    pub typed: Vec<KeyEvent>,
    /// Whether the terminal answered before the deadline.
    pub answered: bool,
    /// Whether the terminal inflates zlib-compressed kitty images (`o=z`).
    pub kitty_zlib: bool,
}

/// Replies recognised in the terminal's answer.
#[derive(Debug, Default, PartialEq)]
pub struct Replies {
    pub kitty: bool,
    pub kitty_zlib: bool,
    pub sixel: bool,
    pub cell: Option<(u16, u16)>,
    /// The closing Device Status Report reply.
    pub done: bool,
}

/// The bytes written: kitty graphics query, the same with a zlib-compressed
/// payload (whether kitty images can be sent compressed), primary device
/// attributes (sixel = attribute 4), cell size in pixels, and a status
/// report that every terminal answers last.
pub const QUERY: &str = "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\\x1b_Gi=32,s=1,v=1,a=q,t=d,f=24,o=z;eJxjYGAAAAADAAE=\x1b\\\x1b[c\x1b[16t\x1b[5n";

/// Probes the terminal (already in raw mode) unless half-blocks are forced;
/// the protocol is the one forced, else the best the terminal answered.
pub fn probe(graphics: Graphics, timeout: Duration) -> Probe {
    if graphics == Graphics::Halfblocks {
        return Probe { picker: Picker::halfblocks(), typed: Vec::new(), answered: false, kitty_zlib: false };
    }
    let (replies, typed) = query_terminal(timeout).unwrap_or_default();
    let font = replies
        .cell
        .filter(|(w, h)| *w > 0 && *h > 0)
        .map(|(w, h)| FontSize::new(w, h))
        .or_else(font_size_from_winsize)
        .unwrap_or(FontSize::new(10, 20));
    let protocol = match graphics {
        Graphics::Kitty => ProtocolType::Kitty,
        Graphics::Sixel => ProtocolType::Sixel,
        Graphics::Iterm2 => ProtocolType::Iterm2,
        _ if replies.kitty => ProtocolType::Kitty,
        _ if replies.sixel => ProtocolType::Sixel,
        _ => ProtocolType::Halfblocks,
    };
    // The font size comes from our probe; the picker is made from it.
    #[allow(deprecated)]
    let mut picker = Picker::from_fontsize(font);
    picker.set_protocol_type(protocol);
    Probe { picker, typed, answered: replies.done, kitty_zlib: replies.kitty_zlib }
}

fn font_size_from_winsize() -> Option<FontSize> {
    let ws = rustix::termios::tcgetwinsize(rustix::stdio::stdout()).ok()?;
    if ws.ws_xpixel == 0 || ws.ws_ypixel == 0 || ws.ws_col == 0 || ws.ws_row == 0 {
        return None;
    }
    Some(FontSize::new(ws.ws_xpixel / ws.ws_col, ws.ws_ypixel / ws.ws_row))
}

/// Writes the query and reads until the status reply or the deadline.
fn query_terminal(timeout: Duration) -> std::io::Result<(Replies, Vec<KeyEvent>)> {
    let mut out = std::io::stdout();
    out.write_all(QUERY.as_bytes())?;
    out.flush()?;
    let stdin = rustix::stdio::stdin();
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    loop {
        let (replies, _) = split_replies(&bytes);
        if replies.done {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [rustix::event::PollFd::new(&stdin, rustix::event::PollFlags::IN)];
        let ts = rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec { tv_sec: 1, tv_nsec: 0 });
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let mut buf = [0u8; 256];
        match rustix::io::read(stdin.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let (replies, rest) = split_replies(&bytes);
    Ok((replies, decode_keys(&rest)))
}

/// Separates the terminal's replies from the other bytes (typed keys).
pub fn split_replies(bytes: &[u8]) -> (Replies, Vec<u8>) {
    let mut r = Replies::default();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'_') {
            // APC … ST: the kitty graphics reply.
            let body_start = i + 2;
            let end = (body_start..bytes.len().saturating_sub(1)).find(|&j| bytes[j] == 0x1b && bytes[j + 1] == b'\\');
            let Some(end) = end else { break };
            let body = &bytes[body_start..end];
            if body.starts_with(b"Gi=31") && body.ends_with(b";OK") {
                r.kitty = true;
            }
            if body.starts_with(b"Gi=32") && body.ends_with(b";OK") {
                r.kitty_zlib = true;
            }
            i = end + 2;
            continue;
        }
        if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'[') {
            // CSI params final: replies are `?…c`, `6;h;wt`, `0n`.
            let mut j = i + 2;
            while j < bytes.len() && (0x20..0x40).contains(&bytes[j]) {
                j += 1;
            }
            if j < bytes.len() {
                let params = &bytes[i + 2..j];
                let fin = bytes[j];
                let text = String::from_utf8_lossy(params);
                let reply = match fin {
                    b'c' if text.starts_with('?') => {
                        r.sixel |= text[1..].split(';').any(|p| p == "4");
                        true
                    }
                    b't' if text.starts_with("6;") => {
                        let v: Vec<u16> = text.split(';').filter_map(|p| p.parse().ok()).collect();
                        if let [6, h, w] = v[..] {
                            r.cell = Some((w, h));
                        }
                        true
                    }
                    b'n' if text == "0" || text == "3" => {
                        r.done = true;
                        true
                    }
                    _ => false,
                };
                if reply {
                    i = j + 1;
                    continue;
                }
            }
        }
        rest.push(bytes[i]);
        i += 1;
    }
    (r, rest)
}

/// Decodes typed bytes into key events: printable characters (UTF-8),
/// enter, tab, backspace, escape, ctrl-letters, arrows, home/end, page
/// up/down, insert/delete and F1–F12, in the encodings xterm-like
/// terminals and tmux send.
pub fn decode_keys(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (key, used) = match bytes[i] {
            0x1b => match decode_escape(&bytes[i..]) {
                Some(decoded) => decoded,
                // A sequence cut off at the end of what was read: dropped, as before.
                None => break,
            },
            _ => decode_plain(&bytes[i..]),
        };
        out.extend(key);
        i += used;
    }
    out
}

/// One key from bytes starting with ESC: a CSI/SS3 sequence (arrows, F-keys,
/// home/end, page keys, with xterm modifiers), alt-<key>, or a lone escape.
/// Returns the key (if the sequence names one) and the bytes it used, or
/// None when a CSI/SS3 sequence has no final byte yet.
fn decode_escape(bytes: &[u8]) -> Option<(Option<KeyEvent>, usize)> {
    match bytes.get(1).copied() {
        Some(b'[') | Some(b'O') => {
            let mut j = 2;
            while j < bytes.len() && (0x20..0x40).contains(&bytes[j]) {
                j += 1;
            }
            let fin = *bytes.get(j)?;
            let params = String::from_utf8_lossy(&bytes[2..j]).into_owned();
            let mut parts = params.split(';');
            let first: u8 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
            let mods = parts.next().and_then(|m| m.parse::<u8>().ok()).map(modifiers).unwrap_or(KeyModifiers::NONE);
            Some((csi_key(fin, first).map(|code| KeyEvent::new(code, mods)), j + 1))
        }
        Some(c) if c != 0x1b => {
            // alt-<key>
            let n = utf8_len(c);
            let mut inner = decode_keys(&bytes[1..1 + n.min(bytes.len() - 1)]);
            let key = inner.pop().map(|mut k| {
                k.modifiers |= KeyModifiers::ALT;
                k
            });
            Some((key, 1 + n))
        }
        _ => Some((Some(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)), 1)),
    }
}

/// The key a CSI/SS3 sequence's final byte (and, for `~`, its first
/// parameter) names.
fn csi_key(fin: u8, first: u8) -> Option<KeyCode> {
    match fin {
        b'A' => Some(KeyCode::Up),
        b'B' => Some(KeyCode::Down),
        b'C' => Some(KeyCode::Right),
        b'D' => Some(KeyCode::Left),
        b'H' => Some(KeyCode::Home),
        b'F' => Some(KeyCode::End),
        b'Z' => Some(KeyCode::BackTab),
        b'P' => Some(KeyCode::F(1)),
        b'Q' => Some(KeyCode::F(2)),
        b'R' => Some(KeyCode::F(3)),
        b'S' => Some(KeyCode::F(4)),
        b'~' => match first {
            1 | 7 => Some(KeyCode::Home),
            2 => Some(KeyCode::Insert),
            3 => Some(KeyCode::Delete),
            4 | 8 => Some(KeyCode::End),
            5 => Some(KeyCode::PageUp),
            6 => Some(KeyCode::PageDown),
            11..=15 => Some(KeyCode::F(first - 10)),
            17..=21 => Some(KeyCode::F(first - 11)),
            23 | 24 => Some(KeyCode::F(first - 12)),
            _ => None,
        },
        _ => None,
    }
}

/// One key from bytes not starting with ESC: enter, tab, backspace,
/// ctrl-letters, or a printable UTF-8 character; and the bytes it used.
fn decode_plain(bytes: &[u8]) -> (Option<KeyEvent>, usize) {
    let key = |code: KeyCode| Some(KeyEvent::new(code, KeyModifiers::NONE));
    let b = bytes[0];
    match b {
        b'\r' | b'\n' => (key(KeyCode::Enter), 1),
        b'\t' => (key(KeyCode::Tab), 1),
        0x7f | 0x08 => (key(KeyCode::Backspace), 1),
        0x00 => (Some(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::CONTROL)), 1),
        0x01..=0x1a => (Some(KeyEvent::new(KeyCode::Char((b - 1 + b'a') as char), KeyModifiers::CONTROL)), 1),
        0x1c..=0x1f => (None, 1),
        _ => {
            let n = utf8_len(b).min(bytes.len());
            let c = std::str::from_utf8(&bytes[..n]).ok().and_then(|s| s.chars().next());
            let mods = |c: char| if c.is_uppercase() { KeyModifiers::SHIFT } else { KeyModifiers::NONE };
            (c.map(|c| KeyEvent::new(KeyCode::Char(c), mods(c))), n)
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// xterm's modifier parameter (1 + shift 1, alt 2, ctrl 4).
fn modifiers(p: u8) -> KeyModifiers {
    let bits = p.saturating_sub(1);
    let mut m = KeyModifiers::NONE;
    if bits & 1 != 0 {
        m |= KeyModifiers::SHIFT;
    }
    if bits & 2 != 0 {
        m |= KeyModifiers::ALT;
    }
    if bits & 4 != 0 {
        m |= KeyModifiers::CONTROL;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(keys: &[KeyEvent]) -> Vec<KeyCode> {
        keys.iter().map(|k| k.code).collect()
    }

    #[test]
    fn replies_are_separated_from_typed_keys() {
        // Keys typed before, between and after the replies survive in order.
        let bytes = b"a5\x1b_Gi=31;OK\x1b\\n\x1b_Gi=32;OK\x1b\\\x1b[?62;4;22c\x1b[6;20;10tx\x1b[0nq";
        let (r, rest) = split_replies(bytes);
        assert_eq!(r, Replies { kitty: true, kitty_zlib: true, sixel: true, cell: Some((10, 20)), done: true });
        assert_eq!(rest, b"a5nxq");
        // A terminal without kitty answers the APC with an error, or not at all.
        let (r, rest) = split_replies(b"\x1b_Gi=31;ENOTSUPPORTED\x1b\\\x1b[?1;2c\x1b[0n");
        assert!(!r.kitty && !r.sixel && r.done && rest.is_empty());
        // Arrow keys are CSI too, but not replies.
        let (_, rest) = split_replies(b"\x1b[C\x1b[0n");
        assert_eq!(rest, b"\x1b[C");
    }

    #[test]
    fn typed_bytes_become_keys() {
        let keys = decode_keys(b"an5\x1b[C\x1bOD\x1b[6~\r\x7f\x03/?N\xc3\xa9\x1b");
        assert_eq!(
            chars(&keys),
            vec![
                KeyCode::Char('a'),
                KeyCode::Char('n'),
                KeyCode::Char('5'),
                KeyCode::Right,
                KeyCode::Left,
                KeyCode::PageDown,
                KeyCode::Enter,
                KeyCode::Backspace,
                KeyCode::Char('c'),
                KeyCode::Char('/'),
                KeyCode::Char('?'),
                KeyCode::Char('N'),
                KeyCode::Char('é'),
                KeyCode::Esc,
            ]
        );
        assert_eq!(keys[8].modifiers, KeyModifiers::CONTROL);
        assert_eq!(keys[11].modifiers, KeyModifiers::SHIFT);
        let shifted = decode_keys(b"\x1b[1;5C\x1bq");
        assert_eq!(shifted[0], KeyEvent::new(KeyCode::Right, KeyModifiers::CONTROL));
        assert_eq!(shifted[1], KeyEvent::new(KeyCode::Char('q'), KeyModifiers::ALT));
    }
}
