//! The log on disk: numbered segment files of checksummed frames.
//!
//! ```text
//! segment  = header frame*
//! header   = "HRLDLOG\0" format:u32le segment:u32le            (16 bytes)
//! frame    = len:u32le crc:u32le record*                       (one commit)
//! record   = len:u32le crc:u32le kind:u8 fields               (record.rs)
//! ```
//!
//! A frame is what one group commit wrote with one `write` and one
//! `fdatasync`; its checksum covers its records, and each record has its
//! own so a single one can be read and checked anywhere. Recovery rules
//! ([`Log::open`]):
//! - The last segment may end in a torn frame (a crash during the commit
//!   that wrote it, which was therefore never acknowledged): a frame that
//!   runs past the end of the file, or fails its checksum with nothing
//!   valid after it. It is cut off and the log continues from there.
//! - A frame that fails its checksum with a valid frame after it, or any
//!   bad frame in a segment that is not the last (a newer segment is only
//!   started after the older one was synced), was acknowledged and is now
//!   corrupt: opening fails with [`LogError::Corrupt`], naming the file
//!   and offset, rather than running without what it held.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::codec::crc;
use super::record::{FORMAT, Loc, Record};

const MAGIC: &[u8; 8] = b"HRLDLOG\0";
/// Bytes of a segment's header.
pub const HEADER: u32 = 16;
/// A new segment is started once the active one is this large (default).
pub const SEGMENT_BYTES: u32 = 64 << 20;

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file system failed.
    #[error("store i/o: {0}")]
    Io(#[from] std::io::Error),
    /// An acknowledged part of the log does not match its checksum.
    #[error(
        "store corrupt: {file} at byte {offset}: {what}; the agent will not run on a damaged store (restore the data directory, or move it aside to start empty and let its deliveries be re-published)"
    )]
    Corrupt {
        /// The segment file.
        file: String,
        /// Where the bad bytes start.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

fn corrupt(path: &Path, offset: u64, what: impl Into<String>) -> LogError {
    LogError::Corrupt {
        file: path.display().to_string(),
        offset,
        what: what.into(),
    }
}

/// The segments readers may read, by number. An unlinked segment stays
/// readable through the handles readers already took.
pub type Segments = Arc<RwLock<BTreeMap<u32, Arc<File>>>>;

/// The writer's end of the log.
pub struct Log {
    dir: PathBuf,
    active: File,
    active_seg: u32,
    active_len: u32,
    segment_bytes: u32,
    segments: Segments,
}

/// A frame being built: records and the places they will have.
pub struct Frame {
    buf: Vec<u8>,
    start: Loc,
}

impl Frame {
    /// Adds a record; returns where it will be and its size on disk.
    pub fn push(&mut self, r: &Record) -> (Loc, u32) {
        let at = self.buf.len();
        let size = put_record(&mut self.buf, r);
        let loc = Loc {
            seg: self.start.seg,
            off: self.start.off + at as u32,
        };
        (loc, size)
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 8
    }
}

/// Appends `r` to `buf` framed as in a segment (length, CRC-32, record);
/// returns the bytes added. Handoff streams use the same framing.
pub fn put_record(buf: &mut Vec<u8>, r: &Record) -> u32 {
    let at = buf.len();
    buf.extend_from_slice(&[0; 8]);
    r.encode(buf);
    let body = &buf[at + 8..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let sum = crc(body);
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    buf[at + 4..at + 8].copy_from_slice(&sum.to_le_bytes());
    len + 8
}

/// The records of a buffer written with [`put_record`], each checked;
/// the error says where the first bad one starts and why.
pub fn parse_records(bytes: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < bytes.len() {
        let body = record_at(bytes, off, bytes.len()).map_err(|e| format!("byte {off}: {e}"))?;
        out.push(Record::decode(body).map_err(|e| format!("byte {off}: {e}"))?);
        off += 8 + body.len();
    }
    Ok(out)
}

fn seg_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("seg-{seg:010}.log"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment numbers in `dir`, ascending.
fn list_segments(dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("seg-")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Where a segment's valid frames end, or why it is corrupt. `last` says
/// whether a bad tail may be a torn, unacknowledged commit.
fn valid_end(path: &Path, bytes: &[u8], seg: u32, last: bool) -> Result<usize, LogError> {
    if bytes.len() < HEADER as usize {
        return if last {
            Ok(0)
        } else {
            Err(corrupt(path, 0, "segment shorter than its header"))
        };
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt(path, 0, "not a Herald store segment"));
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if format != FORMAT {
        return Err(LogError::Corrupt {
            file: path.display().to_string(),
            offset: 8,
            what: format!("record format {format}, this build reads {FORMAT}"),
        });
    }
    if u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default()) != seg {
        return Err(corrupt(path, 12, "segment number does not match its name"));
    }
    let mut off = HEADER as usize;
    loop {
        match frame_at(bytes, off) {
            FrameCheck::End => return Ok(off),
            FrameCheck::Valid(next) => off = next,
            FrameCheck::Bad(next) => {
                let valid_after =
                    next.is_some_and(|n| matches!(frame_at(bytes, n), FrameCheck::Valid(_)));
                if last && !valid_after {
                    return Ok(off);
                }
                return Err(corrupt(path, off as u64, "frame checksum mismatch"));
            }
        }
    }
}

enum FrameCheck {
    /// Nothing more (end of file, or zeros).
    End,
    /// A frame whose checksum holds; the next one starts here.
    Valid(usize),
    /// A frame that is cut short or fails its checksum; where the next one
    /// would start if its length can be believed.
    Bad(Option<usize>),
}

fn frame_at(bytes: &[u8], off: usize) -> FrameCheck {
    if off == bytes.len() {
        return FrameCheck::End;
    }
    if off + 8 > bytes.len() {
        return FrameCheck::Bad(None);
    }
    let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default()) as usize;
    let sum = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap_or_default());
    if len == 0 && sum == 0 && bytes[off..].iter().all(|b| *b == 0) {
        return FrameCheck::End;
    }
    let end = off + 8 + len;
    if end > bytes.len() {
        return FrameCheck::Bad(None);
    }
    if crc(&bytes[off + 8..end]) != sum {
        return FrameCheck::Bad(Some(end));
    }
    FrameCheck::Valid(end)
}

/// Calls `f` with each record of a valid frame region, and its place.
fn records_in(
    path: &Path,
    seg: u32,
    bytes: &[u8],
    payloads: bool,
    mut f: impl FnMut(Loc, u32, Record) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut off = HEADER as usize;
    while off < bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default()) as usize;
        let end = off + 8 + len;
        let mut r = off + 8;
        while r < end {
            let rec = record_at(bytes, r, end).map_err(|what| corrupt(path, r as u64, what))?;
            let rlen = rec.len();
            let record = if payloads {
                Record::decode(rec)
            } else {
                Record::decode_without_payload(rec)
            }
            .map_err(|e| corrupt(path, r as u64, e.0))?;
            f(Loc { seg, off: r as u32 }, (rlen + 8) as u32, record)?;
            r += 8 + rlen;
        }
        off = end;
    }
    Ok(())
}

/// Reads, checks (cutting a torn tail) and decodes every segment in order,
/// sending records in batches; returns the readers of the segments.
fn read_all(
    dir: &Path,
    segs: &[u32],
    tx: &std::sync::mpsc::SyncSender<Vec<(Loc, u32, Record)>>,
) -> Result<BTreeMap<u32, Arc<File>>, LogError> {
    const BATCH: usize = 4096;
    let mut readers = BTreeMap::new();
    for (i, &seg) in segs.iter().enumerate() {
        let path = seg_path(dir, seg);
        let bytes = std::fs::read(&path)?;
        let last = i + 1 == segs.len();
        let end = valid_end(&path, &bytes, seg, last)?;
        if end < bytes.len() {
            tracing::warn!(file = %path.display(), offset = end, dropped = bytes.len() - end, "cutting off a torn, unacknowledged commit at the end of the store");
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(end as u64)?;
            f.sync_all()?;
        }
        if end >= HEADER as usize {
            let mut batch = Vec::with_capacity(BATCH);
            records_in(&path, seg, &bytes[..end], false, |loc, size, r| {
                batch.push((loc, size, r));
                if batch.len() >= BATCH {
                    // The receiver only goes away with an error of its own.
                    let _ = tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
                Ok(())
            })?;
            let _ = tx.send(batch);
        }
        readers.insert(seg, Arc::new(File::open(&path)?));
    }
    Ok(readers)
}

/// The checked body of the record at `off` (which must end by `end`).
fn record_at(bytes: &[u8], off: usize, end: usize) -> Result<&[u8], &'static str> {
    if off + 8 > end {
        return Err("record header cut short");
    }
    let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default()) as usize;
    let sum = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap_or_default());
    let body = bytes
        .get(off + 8..off + 8 + len)
        .filter(|_| off + 8 + len <= end);
    match body {
        Some(b) if crc(b) == sum => Ok(b),
        Some(_) => Err("record checksum mismatch"),
        None => Err("record runs past its frame"),
    }
}

impl Log {
    /// Opens the log in `dir` (creating it), calling `replay` with every
    /// record in log order (payloads left out). A torn tail is cut off;
    /// corruption fails. A reader thread checks and decodes while `replay`
    /// runs on the caller's.
    pub fn open(
        dir: &Path,
        segment_bytes: u32,
        mut replay: impl FnMut(Loc, u32, Record) -> Result<(), LogError>,
    ) -> Result<Log, LogError> {
        std::fs::create_dir_all(dir)?;
        let segs = list_segments(dir)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Loc, u32, Record)>>(8);
        let reader = {
            let (dir, segs) = (dir.to_path_buf(), segs.clone());
            std::thread::Builder::new()
                .name("store-replay".into())
                .spawn(move || read_all(&dir, &segs, &tx))?
        };
        let mut replayed = Ok(());
        for batch in rx {
            for (loc, size, r) in batch {
                if replayed.is_ok() {
                    replayed = replay(loc, size, r);
                }
            }
        }
        let readers = reader
            .join()
            .map_err(|_| LogError::Io(std::io::Error::other("the replay thread panicked")))??;
        replayed?;
        let (active_seg, active_len) = match segs.last() {
            Some(&seg) => {
                let len = std::fs::metadata(seg_path(dir, seg))?.len() as u32;
                (seg, len)
            }
            None => (0, 0),
        };
        let mut log = Log {
            dir: dir.to_path_buf(),
            active: OpenOptions::new()
                .create(true)
                .append(true)
                .open(seg_path(dir, active_seg))?,
            active_seg,
            active_len,
            segment_bytes,
            segments: Arc::new(RwLock::new(readers)),
        };
        if active_len < HEADER {
            // New, or a crash left its header unwritten.
            log.active.set_len(0)?;
            log.write_header()?;
        }
        Ok(log)
    }

    fn write_header(&mut self) -> std::io::Result<()> {
        let mut h = Vec::with_capacity(HEADER as usize);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&FORMAT.to_le_bytes());
        h.extend_from_slice(&self.active_seg.to_le_bytes());
        self.active.write_all(&h)?;
        self.active.sync_all()?;
        sync_dir(&self.dir)?;
        self.active_len = HEADER;
        let reader = Arc::new(File::open(seg_path(&self.dir, self.active_seg))?);
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.active_seg, reader);
        Ok(())
    }

    /// The readers' view of the segments.
    pub fn segments(&self) -> Segments {
        self.segments.clone()
    }

    /// Bytes in a segment now.
    pub fn segment_len(&self, seg: u32) -> u64 {
        std::fs::metadata(seg_path(&self.dir, seg)).map_or(0, |m| m.len())
    }

    /// The segment being written.
    pub fn active_segment(&self) -> u32 {
        self.active_seg
    }

    /// Starts a frame at the end of the log, in a new segment if the active
    /// one is full.
    pub fn frame(&mut self) -> std::io::Result<Frame> {
        if self.active_len >= self.segment_bytes {
            self.active.sync_data()?;
            self.active_seg += 1;
            self.active = OpenOptions::new()
                .create(true)
                .append(true)
                .open(seg_path(&self.dir, self.active_seg))?;
            self.active.set_len(0)?;
            self.write_header()?;
        }
        Ok(Frame {
            buf: vec![0; 8],
            start: Loc {
                seg: self.active_seg,
                off: self.active_len,
            },
        })
    }

    /// Writes a frame and makes it durable. A failed write is undone
    /// (the file is cut back) and reported; a failed sync cannot be
    /// trusted either way, so the caller must stop.
    pub fn commit(&mut self, mut frame: Frame) -> Result<(), CommitError> {
        if frame.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(frame.buf.len() - 8)
            .map_err(|_| CommitError::Write(std::io::Error::other("commit larger than 4 GiB")))?;
        let sum = crc(&frame.buf[8..]);
        frame.buf[..4].copy_from_slice(&len.to_le_bytes());
        frame.buf[4..8].copy_from_slice(&sum.to_le_bytes());
        if let Err(e) = self.active.write_all(&frame.buf) {
            self.active
                .set_len(u64::from(self.active_len))
                .map_err(CommitError::Sync)?;
            return Err(CommitError::Write(e));
        }
        self.active.sync_data().map_err(CommitError::Sync)?;
        self.active_len += frame.buf.len() as u32;
        Ok(())
    }

    /// Deletes a segment that holds nothing live any more.
    pub fn remove(&mut self, seg: u32) -> std::io::Result<()> {
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seg);
        std::fs::remove_file(seg_path(&self.dir, seg))?;
        sync_dir(&self.dir)
    }

    /// Reads every record of a sealed segment (for compaction).
    pub fn read_segment(&self, seg: u32) -> Result<Vec<(Loc, Record)>, LogError> {
        let path = seg_path(&self.dir, seg);
        let bytes = std::fs::read(&path)?;
        let end = valid_end(&path, &bytes, seg, false)?;
        let mut out = Vec::new();
        records_in(&path, seg, &bytes[..end], true, |loc, _, r| {
            out.push((loc, r));
            Ok(())
        })?;
        Ok(out)
    }
}

/// A commit that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Nothing was written (the file was cut back); the log is usable.
    #[error("store write failed: {0}")]
    Write(std::io::Error),
    /// The data may or may not be on disk: the process must restart and
    /// recover from what is.
    #[error("store sync failed: {0}")]
    Sync(std::io::Error),
}

/// Reads the record at `loc`, checking its checksum.
pub fn read(segments: &Segments, loc: Loc) -> Result<Record, LogError> {
    let file = segments
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&loc.seg)
        .cloned()
        .ok_or_else(|| {
            LogError::Io(std::io::Error::other(format!(
                "segment {} is gone",
                loc.seg
            )))
        })?;
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head, u64::from(loc.off))?;
    let len = u32::from_le_bytes(head[..4].try_into().unwrap_or_default()) as usize;
    let sum = u32::from_le_bytes(head[4..].try_into().unwrap_or_default());
    let mut body = vec![0u8; len];
    file.read_exact_at(&mut body, u64::from(loc.off) + 8)?;
    let path = || format!("segment {}", loc.seg);
    if crc(&body) != sum {
        return Err(LogError::Corrupt {
            file: path(),
            offset: u64::from(loc.off),
            what: "record checksum mismatch".into(),
        });
    }
    Record::decode(&body).map_err(|e| LogError::Corrupt {
        file: path(),
        offset: u64::from(loc.off),
        what: e.0.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> Record {
        Record::MarkLate { up_to: n }
    }

    fn replayed(dir: &Path) -> Result<Vec<u64>, LogError> {
        let mut out = Vec::new();
        Log::open(dir, SEGMENT_BYTES, |_, _, r| {
            if let Record::MarkLate { up_to } = r {
                out.push(up_to);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Three commits of two records each; returns the file and where the
    /// last commit starts.
    fn three_commits(dir: &Path) -> (PathBuf, u64) {
        let mut log = Log::open(dir, SEGMENT_BYTES, |_, _, _| Ok(())).unwrap();
        let mut last_start = 0;
        for c in 0..3u64 {
            let mut f = log.frame().unwrap();
            last_start = u64::from(log.active_len);
            let (loc, _) = f.push(&rec(c * 2));
            f.push(&rec(c * 2 + 1));
            log.commit(f).unwrap();
            assert!(
                matches!(read(&log.segments(), loc).unwrap(), Record::MarkLate { up_to } if up_to == c * 2)
            );
        }
        (seg_path(dir, 0), last_start)
    }

    #[test]
    fn a_torn_last_commit_is_cut_at_every_byte_and_nothing_acknowledged_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (path, last_start) = three_commits(dir.path());
        let full = std::fs::read(&path).unwrap();
        assert_eq!(replayed(dir.path()).unwrap(), [0, 1, 2, 3, 4, 5]);
        for cut in last_start..full.len() as u64 {
            std::fs::write(&path, &full[..cut as usize]).unwrap();
            assert_eq!(replayed(dir.path()).unwrap(), [0, 1, 2, 3], "cut at {cut}");
            // The tail was cut off: the log appends after the good part.
            assert_eq!(std::fs::metadata(&path).unwrap().len(), last_start);
        }
    }

    #[test]
    fn garbage_over_the_last_commit_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, last_start) = three_commits(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[last_start as usize + 10..] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(replayed(dir.path()).unwrap(), [0, 1, 2, 3]);
    }

    #[test]
    fn a_flipped_byte_before_a_valid_commit_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = three_commits(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER as usize + 12] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = replayed(dir.path()).unwrap_err();
        assert!(
            matches!(&err, LogError::Corrupt { offset, .. } if *offset == u64::from(HEADER)),
            "{err}"
        );
        assert!(err.to_string().contains("seg-0000000000.log"), "{err}");
    }

    #[test]
    fn a_new_segment_starts_when_the_active_one_is_full_and_both_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), SEGMENT_BYTES, |_, _, _| Ok(())).unwrap();
        log.active_len = SEGMENT_BYTES;
        let f = log.frame().unwrap();
        assert_eq!(log.active_segment(), 1);
        log.commit(f).unwrap();
        let mut f = log.frame().unwrap();
        f.push(&rec(9));
        log.commit(f).unwrap();
        drop(log);
        assert_eq!(replayed(dir.path()).unwrap(), [9]);
        assert_eq!(list_segments(dir.path()).unwrap(), [0, 1]);
    }
}
