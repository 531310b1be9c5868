//! The write path of the JSONL store: appending a call's item line and event lines (one
//! positioned write per file, synced unless the host syncs), indexing them without reading
//! them back, cutting a torn tail before the first append of a call, and creating the files.

use std::fs::{self, File, OpenOptions};
use std::io;

use backlog_core::list::ItemKeys;
use backlog_core::model::{Event, Item};

use super::store::{Access, Appender, Durability, EVENTS_FILE, ITEMS_FILE, JsonlStore};
use crate::error::{JsonlError, read_err, refuse_symlink, write_err};
use crate::index::Loc;
use crate::positioned::{read_at, write_all_at};

impl JsonlStore {
    /// The appender of `items.jsonl` (0) or `events.jsonl` (1): opened (created if missing,
    /// with its directory entry synced) and with any torn tail cut on first use in a call.
    fn appender(&mut self, which: usize) -> Result<&mut Appender, JsonlError> {
        let name = [ITEMS_FILE, EVENTS_FILE][which];
        if self.appenders[which].is_none() {
            let (file, created) = self.open_append(name)?;
            if created {
                self.sync_dir();
            }
            cut_torn_tail(&file, name, self.warn.as_mut())?;
            let len = file_len(Some(&file), name)?;
            self.appenders[which] = Some(Appender { file, len });
        }
        self.appenders[which]
            .as_mut()
            .ok_or(JsonlError::ReadOnly { file: name })
    }

    pub(super) fn write_now(
        &mut self,
        item: Option<&Item>,
        events: &[Event],
    ) -> Result<(), JsonlError> {
        if self.access == Access::ReadOnly {
            let file = if item.is_some() {
                ITEMS_FILE
            } else {
                EVENTS_FILE
            };
            return Err(JsonlError::ReadOnly { file });
        }
        if item.is_none() && events.is_empty() {
            return Ok(());
        }
        // Serialize first: nothing touches the disk if a record cannot be encoded.
        let item_buf = match item {
            Some(item) => Some(encode(ITEMS_FILE, std::slice::from_ref(item))?),
            None => None,
        };
        let ev_buf = match events.is_empty() {
            false => Some(encode(EVENTS_FILE, events)?),
            true => None,
        };

        // A write a crash interrupted goes first, so ours can neither complete it nor hide
        // behind it. Then open for appending and cut torn tails, then catch the index up with
        // whatever is complete on disk, so the offsets of our lines are known.
        self.cut_interrupted_write()?;
        let items_base = self.appender(0)?.len;
        let events_base = self.appender(1)?.len;
        self.refresh_items()?;
        if ev_buf.is_some() {
            self.refresh_events()?;
        }
        // Say where the call's writes go before any of it does: a crash can then leave any
        // prefix of them in either file, and readers still see all of the call or none.
        let len = |buf: &Option<Encoded>| buf.as_ref().map_or(0, |b| b.bytes.len() as u64);
        let ends = (items_base + len(&item_buf), events_base + len(&ev_buf));
        self.announce_write((items_base, events_base), ends)?;
        let sync = self.durability == Durability::SyncEachWrite;
        let mut result = Ok(());
        for (which, buf, base) in [(0, &item_buf, items_base), (1, &ev_buf, events_base)] {
            let (Some(buf), Ok(())) = (buf, &result) else {
                continue;
            };
            let name = [ITEMS_FILE, EVENTS_FILE][which];
            let a = self.appender(which)?;
            result = write_all_at(&a.file, &buf.bytes, base)
                .and_then(|()| if sync { a.file.sync_data() } else { Ok(()) })
                .map_err(|e| write_err(name, "write", e));
            if result.is_ok() {
                a.len = base + buf.bytes.len() as u64;
            }
        }
        if result.is_ok() {
            self.wrote(ends);
        }
        if let Err(e) = result {
            // Best effort: leave no half-written call behind (a failed call must not show up).
            for (which, base) in [(0, items_base), (1, events_base)] {
                if let Some(a) = self.appenders[which].take() {
                    let _ = a.file.set_len(base).and_then(|()| a.file.sync_data());
                }
            }
            return Err(e);
        }
        let items_f = self.appenders[0].as_ref().map(|a| &a.file);
        let events_f = self.appenders[1].as_ref().map(|a| &a.file);

        // Index what was written without reading it back, when the file was exactly what
        // the index had seen (it is, with the host serializing writers); else the next
        // refresh reads it.
        // Whatever is not indexed here, the next refresh must read, even within this call.
        if item_buf.is_some() {
            self.items.uncheck();
        }
        if ev_buf.is_some() {
            self.events.uncheck();
        }
        if let (Some(item), Some(buf), Some(f)) = (item, &item_buf, &items_f)
            && self.items.fully_indexed()
            && self.items.end == items_base
        {
            let loc = Loc {
                off: items_base,
                len: u32::try_from(buf.bytes.len())
                    .map_err(|_| JsonlError::TooLarge { file: ITEMS_FILE })?,
            };
            self.index
                .put_item(ItemKeys::of(item), &item.dedupe_key, loc)
                .map_err(|_| JsonlError::TooLarge { file: ITEMS_FILE })?;
            self.items
                .appended(f.metadata().ok().as_ref(), &buf.bytes, 1, buf.last_len());
            self.items.recheck_done();
        }
        if let (Some(buf), Some(f)) = (&ev_buf, &events_f)
            && self.events.fully_indexed()
            && self.events.end == events_base
        {
            let mut off = events_base;
            for (ev, &len) in events.iter().zip(&buf.lens) {
                self.index
                    .put_event(&ev.item_id, Loc { off, len })
                    .map_err(|_| JsonlError::TooLarge { file: EVENTS_FILE })?;
                off += u64::from(len);
            }
            self.events.appended(
                f.metadata().ok().as_ref(),
                &buf.bytes,
                events.len() as u64,
                buf.last_len(),
            );
            self.events.recheck_done();
        }
        if !self.scoped {
            self.appenders = [None, None];
        }
        self.maybe_checkpoint();
        Ok(())
    }

    /// Opens `name` for reading and appending; creates it (and the directory) if missing and
    /// then says so (`true`), because the new directory entry needs syncing too.
    fn open_append(&self, name: &'static str) -> Result<(File, bool), JsonlError> {
        let path = self.dir.join(name);
        let open = |create: bool| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(create)
                .open(&path)
        };
        match open(false) {
            Ok(f) => {
                refuse_symlink(&path, name)?;
                Ok((f, false))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A dangling link would be created through.
                refuse_symlink(&path, name)?;
                fs::create_dir_all(&self.dir).map_err(|e| write_err(name, "create", e))?;
                let f = open(true).map_err(|e| write_err(name, "create", e))?;
                Ok((f, true))
            }
            Err(e) => {
                refuse_symlink(&path, name)?;
                Err(write_err(name, "write", e))
            }
        }
    }

    /// Makes the creation of a file durable (its directory entry). Best effort: not every
    /// platform lets a directory be opened and synced, and the data itself is already synced.
    pub(super) fn sync_dir(&self) {
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }
}

/// Lines ready to append: the bytes (each record compact JSON + `\n`) and each line's length.
struct Encoded {
    bytes: Vec<u8>,
    lens: Vec<u32>,
}

impl Encoded {
    fn last_len(&self) -> usize {
        self.lens.last().map_or(0, |&l| l as usize)
    }
}

fn encode<T: serde::Serialize>(file: &'static str, records: &[T]) -> Result<Encoded, JsonlError> {
    let mut bytes = Vec::with_capacity(512 * records.len());
    let mut lens = Vec::with_capacity(records.len());
    for r in records {
        let start = bytes.len();
        serde_json::to_writer(&mut bytes, r)
            .map_err(|source| JsonlError::Serialize { file, source })?;
        bytes.push(b'\n');
        lens.push(u32::try_from(bytes.len() - start).map_err(|_| JsonlError::TooLarge { file })?);
    }
    Ok(Encoded { bytes, lens })
}

fn file_len(f: Option<&File>, name: &'static str) -> Result<u64, JsonlError> {
    match f {
        Some(f) => Ok(f.metadata().map_err(|e| read_err(name, "stat", e))?.len()),
        None => Ok(0),
    }
}

/// If `f` does not end in `\n`, its tail after the last `\n` is a write that was never
/// acknowledged (crash mid-append): cut it off so it cannot swallow the next line, and warn.
fn cut_torn_tail(
    f: &File,
    name: &'static str,
    warn: &mut dyn FnMut(&str),
) -> Result<(), JsonlError> {
    const BACK: u64 = 64 << 10;
    let len = f.metadata().map_err(|e| read_err(name, "stat", e))?.len();
    if len == 0 {
        return Ok(());
    }
    let last = read_at(f, len - 1, 1).map_err(|e| read_err(name, "read", e))?;
    if last == b"\n" {
        return Ok(());
    }
    let mut pos = len;
    let cut = loop {
        if pos == 0 {
            break 0;
        }
        let from = pos.saturating_sub(BACK);
        let chunk =
            read_at(f, from, (pos - from) as usize).map_err(|e| read_err(name, "read", e))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            break from + i as u64 + 1;
        }
        pos = from;
    };
    f.set_len(cut).map_err(|e| write_err(name, "truncate", e))?;
    warn(&format!(
        "jsonl: cut torn last line of {name} ({} bytes after byte {cut}; a write that was never acknowledged)",
        len - cut
    ));
    Ok(())
}
