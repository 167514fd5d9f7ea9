//! Balancing windows: when the scheduled daemon may carry out balancing moves.
//!
//! `rebalancer.windows: ["mon-fri 22:00-06:00", "sat,sun"]` — a list of day sets with an
//! optional time range in the node's local time. A range that ends before it starts runs past
//! midnight and belongs to the day it starts on (`fri 22:00-06:00` is Friday 22:00 to Saturday
//! 06:00). No windows means always open. Outside every window the daemon still plans and prints
//! (so the admin sees what would happen) but executes only evacuations: draining a node is an
//! explicit decision that must not wait for the night.
//!
//! Parsing and the open/next decisions are pure; only [`local_now`] reads the clock.

use std::fmt;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY: u32 = 24 * 60;
const WEEK: u32 = 7 * DAY;

/// A point in the week: day 0 = Monday, minute of the day 0..1440.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeekTime {
    pub day: u8,
    pub minute: u16,
}

impl WeekTime {
    fn minute_of_week(self) -> u32 {
        u32::from(self.day) * DAY + u32::from(self.minute)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    days: [bool; 7],
    /// Minutes from midnight; `end` may be ≤ `start` (past midnight), 0..=1440.
    start: u16,
    end: u16,
}

#[derive(Debug, PartialEq, Eq)]
pub struct WindowError(String);

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; write days then an optional time range, e.g. `mon-fri 22:00-06:00`, `sat,sun`, \
             `daily 01:00-05:00` (days: mon tue wed thu fri sat sun, daily)",
            self.0
        )
    }
}

impl std::error::Error for WindowError {}

fn err(detail: impl Into<String>) -> WindowError {
    WindowError(detail.into())
}

fn day_index(word: &str) -> Result<usize, WindowError> {
    let w = word.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| w.len() >= 3 && d.starts_with(&w[..3]) && full_day_name(d).starts_with(&w))
        .ok_or_else(|| err(format!("`{word}` is not a day")))
}

fn full_day_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

fn parse_days(text: &str) -> Result<[bool; 7], WindowError> {
    let mut days = [false; 7];
    for part in text.split(',').map(str::trim) {
        if part.eq_ignore_ascii_case("daily") || part == "*" {
            days = [true; 7];
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a.trim())?, day_index(b.trim())?);
                // `fri-mon` wraps over the weekend.
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day_index(part)?] = true,
        }
    }
    Ok(days)
}

fn parse_clock(text: &str) -> Result<u16, WindowError> {
    let bad = || err(format!("`{text}` is not a time of day HH:MM (00:00–24:00)"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) || text.len() > 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl std::str::FromStr for Window {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Window, WindowError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(err("an empty window"));
        }
        let (days, range) = match text.rsplit_once(char::is_whitespace) {
            Some((d, r)) if r.contains(':') => (parse_days(d.trim())?, Some(r)),
            _ if text.contains(':') && !text.contains(char::is_whitespace) => ([true; 7], Some(text)),
            _ => (parse_days(text)?, None),
        };
        let (start, end) = match range {
            None => (0, DAY as u16),
            Some(r) => {
                let (a, b) =
                    r.split_once('-').ok_or_else(|| err(format!("`{r}` is not a range HH:MM-HH:MM")))?;
                let (start, end) = (parse_clock(a)?, parse_clock(b)?);
                if start == end {
                    return Err(err(format!("`{r}` is empty (start equals end)")));
                }
                (start, end)
            }
        };
        Ok(Window { days, start, end })
    }
}

impl Window {
    /// The window's open intervals as minutes of the week `[from, to)`, `to` may pass the week's
    /// end (then it wraps to Monday).
    fn intervals(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..7u32).filter(|&d| self.days[d as usize]).map(move |d| {
            let from = d * DAY + u32::from(self.start);
            let len = if self.end > self.start {
                u32::from(self.end - self.start)
            } else {
                DAY - u32::from(self.start) + u32::from(self.end)
            };
            (from, from + len)
        })
    }

    fn contains(&self, t: WeekTime) -> bool {
        let m = t.minute_of_week();
        self.intervals().any(|(from, to)| (from <= m && m < to) || (to > WEEK && m < to - WEEK))
    }
}

/// Whether balancing may run now: inside any window, or no windows at all.
pub fn is_open(windows: &[Window], now: WeekTime) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(now))
}

/// Minutes until the next window opens (0 when open now; `None` without windows that ever open).
pub fn minutes_until_open(windows: &[Window], now: WeekTime) -> Option<u32> {
    if is_open(windows, now) {
        return Some(0);
    }
    let m = now.minute_of_week();
    windows.iter().flat_map(Window::intervals).map(|(from, _)| (from + WEEK - m) % WEEK).min()
}

pub fn parse_all(texts: &[String]) -> Result<Vec<Window>, (usize, WindowError)> {
    texts.iter().enumerate().map(|(i, t)| t.parse().map_err(|e| (i, e))).collect()
}

/// The node's local time (the admin writes windows in the time the node's clock shows).
pub fn local_now() -> WeekTime {
    // SAFETY: `time(NULL)` and `localtime_r` with valid pointers to owned, zeroed memory.
    let tm = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    // tm_wday: 0 = Sunday.
    WeekTime { day: ((tm.tm_wday + 6) % 7) as u8, minute: (tm.tm_hour * 60 + tm.tm_min) as u16 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u8, h: u16, m: u16) -> WeekTime {
        WeekTime { day, minute: h * 60 + m }
    }

    fn ws(texts: &[&str]) -> Vec<Window> {
        texts.iter().map(|t| t.parse().unwrap_or_else(|e| panic!("{t}: {e}"))).collect()
    }

    #[test]
    fn nightly_weekday_windows_run_past_midnight_into_the_next_day() {
        let w = ws(&["mon-fri 22:00-06:00"]);
        assert!(is_open(&w, at(0, 22, 0)), "Monday 22:00");
        assert!(is_open(&w, at(1, 5, 59)), "Tuesday 05:59 belongs to Monday's window");
        assert!(!is_open(&w, at(1, 6, 0)), "Tuesday 06:00 closes");
        assert!(!is_open(&w, at(0, 21, 59)));
        assert!(is_open(&w, at(5, 3, 0)), "Saturday 03:00 is Friday night's window");
        assert!(!is_open(&w, at(5, 22, 30)), "no window starts on Saturday");
        assert!(!is_open(&w, at(0, 3, 0)), "Monday 03:00 would be Sunday night's: closed");
    }

    #[test]
    fn sunday_night_wraps_into_monday_morning() {
        let w = ws(&["sun 23:00-02:00"]);
        assert!(is_open(&w, at(6, 23, 30)));
        assert!(is_open(&w, at(0, 1, 59)));
        assert!(!is_open(&w, at(0, 2, 0)));
        assert_eq!(minutes_until_open(&w, at(0, 2, 0)), Some(6 * DAY + 21 * 60));
    }

    #[test]
    fn whole_days_lists_ranges_and_daily() {
        let w = ws(&["sat,sun"]);
        assert!(is_open(&w, at(5, 0, 0)) && is_open(&w, at(6, 23, 59)));
        assert!(!is_open(&w, at(4, 23, 59)) && !is_open(&w, at(0, 0, 0)));
        let w = ws(&["fri-mon"]);
        assert!((0..7).all(|d| is_open(&w, at(d, 12, 0)) == [0, 4, 5, 6].contains(&d)));
        let w = ws(&["daily 01:00-05:00", "Saturday 12:00-24:00"]);
        assert!(is_open(&w, at(2, 1, 0)) && !is_open(&w, at(2, 5, 0)));
        assert!(is_open(&w, at(5, 23, 59)) && !is_open(&w, at(5, 11, 59)));
        let w = ws(&["08:00-09:00"]);
        assert!((0..7).all(|d| is_open(&w, at(d, 8, 30))));
        assert!(is_open(&[], at(3, 12, 0)), "no windows: always open");
        assert_eq!(minutes_until_open(&ws(&["daily 01:00-05:00"]), at(2, 0, 30)), Some(30));
        assert_eq!(minutes_until_open(&ws(&["daily 01:00-05:00"]), at(2, 2, 0)), Some(0));
    }

    #[test]
    fn bad_windows_say_what_and_how_to_write_one() {
        for (text, needle) in [
            ("", "empty window"),
            ("funday", "`funday` is not a day"),
            ("mon 25:00-26:00", "`25:00` is not a time of day"),
            ("mon 10:00-10:00", "is empty"),
            ("mon 10:00", "not a range"),
            ("mon 10:60-11:00", "`10:60`"),
            ("mo", "`mo` is not a day"),
        ] {
            let e = text.parse::<Window>().unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("e.g. `mon-fri 22:00-06:00`"), "{e}");
        }
        let e = parse_all(&["sat".into(), "xyz 10:00-11:00".into()]).unwrap_err();
        assert_eq!(e.0, 1);
    }
}
