//! A container's captured output on disk: one file per stream (`stdout.log`, `stderr.log`) of
//! timestamped line records, rotated by size so a container printing without end keeps at most
//! `max_file_bytes × max_files` per stream. The monitor writes it ([`copy_stream`]); berthd
//! reads it for `Tasks/Logs` ([`read_records`]).
//!
//! A record is `<unix ns> <F|P> <bytes>\n`: the time the monitor read the bytes, `F` for a whole
//! line (its newline dropped, the reader puts it back) or `P` for part of one (cut at a read or
//! at [`MAX_RECORD_DATA_BYTES`]), then the bytes as the container wrote them. Lines are split
//! only at `\n`, so any bytes — binary included — round-trip. Rotation renames `stdout.log` to
//! `stdout.log.1` (and `.1` to `.2`, …), dropping the oldest, and starts a new `stdout.log`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use berth_log::Timestamp;

use crate::sys::fs::PRIVATE_FILE_MODE;

/// A record holds at most this much of a line; a longer line becomes several `P` records.
pub const MAX_RECORD_DATA_BYTES: usize = 16 * 1024;
/// The default cap: 10 MiB a file, 3 files a stream (docker's json-file driver, with max-size
/// and max-file set as most operators set them).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: u32 = 3;
/// The most files per stream a configuration may ask for.
pub const MAX_FILES_LIMIT: u32 = 100;

/// How much output is kept per stream: `max_files` files of about `max_file_bytes` each (the
/// current one included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    pub max_file_bytes: u64,
    pub max_files: u32,
}

impl Default for OutputLimits {
    fn default() -> OutputLimits {
        OutputLimits { max_file_bytes: DEFAULT_MAX_FILE_BYTES, max_files: DEFAULT_MAX_FILES }
    }
}

/// One record read back: the bytes of a line (`partial` false: a newline followed them) or of
/// part of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    pub at: Timestamp,
    pub partial: bool,
    pub data: Vec<u8>,
}

impl OutputRecord {
    /// The bytes as the container wrote them.
    pub fn raw(&self) -> Vec<u8> {
        let mut raw = self.data.clone();
        if !self.partial {
            raw.push(b'\n');
        }
        raw
    }
}

/// The rotated file `index` of stream file `path` (0 is the current one).
pub fn rotated_path(path: &Path, index: u32) -> PathBuf {
    if index == 0 {
        return path.to_path_buf();
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// Appends records to a stream file and rotates it when the next record would pass the cap.
pub struct RotatingWriter {
    path: PathBuf,
    limits: OutputLimits,
    file: File,
    written_bytes: u64,
}

impl RotatingWriter {
    pub fn open(path: &Path, limits: OutputLimits) -> io::Result<RotatingWriter> {
        let file = open_append(path)?;
        let written_bytes = file.metadata()?.len();
        Ok(RotatingWriter { path: path.to_path_buf(), limits, file, written_bytes })
    }

    pub fn write_record(&mut self, at: Timestamp, partial: bool, data: &[u8]) -> io::Result<()> {
        let mut record = Vec::with_capacity(data.len() + 24);
        record.extend_from_slice(format!("{} {} ", at.as_ns(), if partial { 'P' } else { 'F' }).as_bytes());
        record.extend_from_slice(data);
        record.push(b'\n');
        if self.written_bytes > 0 && self.written_bytes + record.len() as u64 > self.limits.max_file_bytes {
            self.rotate()?;
        }
        self.file.write_all(&record)?;
        self.written_bytes += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let max_files = self.limits.max_files.max(1);
        if max_files == 1 {
            self.file.set_len(0)?;
        } else {
            for index in (1..max_files - 1).rev() {
                let from = rotated_path(&self.path, index);
                if from.exists() {
                    fs::rename(&from, rotated_path(&self.path, index + 1))?;
                }
            }
            fs::rename(&self.path, rotated_path(&self.path, 1))?;
            self.file = open_append(&self.path)?;
        }
        self.written_bytes = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(PRIVATE_FILE_MODE).open(path)
}

/// Copies what the container writes to `reader` into records until end of file: each `\n`
/// ends a record, and bytes left without one when a read ends (or past
/// [`MAX_RECORD_DATA_BYTES`]) go out as a partial record, so output is never held back.
pub fn copy_stream(mut reader: impl Read, writer: &mut RotatingWriter) -> io::Result<()> {
    let mut buffer = vec![0u8; MAX_RECORD_DATA_BYTES];
    loop {
        let n_read = match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n_read) => n_read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let at = Timestamp::now();
        let mut rest = &buffer[..n_read];
        while !rest.is_empty() {
            match rest.iter().position(|byte| *byte == b'\n') {
                Some(newline) => {
                    writer.write_record(at, false, &rest[..newline])?;
                    rest = &rest[newline + 1..];
                }
                None => {
                    writer.write_record(at, true, rest)?;
                    rest = &[];
                }
            }
        }
    }
}

/// The records of `bytes` (whole records only) and how many bytes they took.
pub fn parse_records(bytes: &[u8]) -> (Vec<OutputRecord>, usize) {
    let mut records = Vec::new();
    let mut consumed = 0;
    while let Some(end) = bytes[consumed..].iter().position(|byte| *byte == b'\n') {
        let line = &bytes[consumed..consumed + end];
        consumed += end + 1;
        let mut fields = line.splitn(3, |byte| *byte == b' ');
        let (ns, flag, data) = (fields.next(), fields.next(), fields.next().unwrap_or_default());
        let ns = ns.and_then(|ns| std::str::from_utf8(ns).ok()).and_then(|text| text.parse::<u64>().ok());
        match (ns, flag) {
            (Some(ns), Some(flag @ (b"F" | b"P"))) => {
                records.push(OutputRecord { at: Timestamp::from_ns(ns), partial: flag == b"P", data: data.to_vec() })
            }
            // Not a record: output an older monitor wrote raw (before records), shown as it is,
            // with no time of its own.
            _ => records.push(OutputRecord { at: Timestamp::from_ns(0), partial: false, data: line.to_vec() }),
        }
    }
    (records, consumed)
}

/// Where a reader of one stream stands: the inode of the file it reads and how far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadPosition {
    pub inode: u64,
    pub offset: u64,
}

/// Every record of the stream (rotated files oldest first) after `position`, and the new
/// position. From `ReadPosition::default()`, everything kept. A file rotated away since the last
/// call is finished from where the reader stood (found again by its inode) before the new one.
pub fn read_records(path: &Path, position: ReadPosition) -> io::Result<(Vec<OutputRecord>, ReadPosition)> {
    // Rotated files are numbered without gaps from 1; the reader need not know the cap.
    let max_files = (1..=MAX_FILES_LIMIT).find(|index| !rotated_path(path, *index).exists()).unwrap_or(MAX_FILES_LIMIT);
    let mut records = Vec::new();
    let current_inode = match fs::metadata(path) {
        Ok(metadata) => metadata.ino(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((records, position)),
        Err(error) => return Err(error),
    };
    if position.inode == current_inode {
        let offset = read_file_records(path, position.offset, &mut records)?;
        return Ok((records, ReadPosition { inode: current_inode, offset }));
    }
    // The files to read, oldest first: from the start (nothing read yet) every rotated file; else
    // the rest of the file the reader was in (now rotated) and every newer one.
    let mut start_index = max_files.max(1) - 1;
    let mut start_offset = 0;
    if position.inode != 0 {
        let found = (1..max_files.max(1)).find(|index| {
            fs::metadata(rotated_path(path, *index)).is_ok_and(|metadata| metadata.ino() == position.inode)
        });
        // Rotated out of existence: whatever it held past the offset is gone; read what is left.
        if let Some(index) = found {
            start_index = index;
            start_offset = position.offset;
        }
    }
    for index in (1..=start_index).rev() {
        let offset = if index == start_index { start_offset } else { 0 };
        match read_file_records(&rotated_path(path, index), offset, &mut records) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            other => {
                other?;
            }
        }
    }
    let offset = read_file_records(path, 0, &mut records)?;
    Ok((records, ReadPosition { inode: current_inode, offset }))
}

fn read_file_records(path: &Path, offset: u64, records: &mut Vec<OutputRecord>) -> io::Result<u64> {
    let mut file = File::open(path)?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (parsed, consumed) = parse_records(&bytes);
    records.extend(parsed);
    Ok(offset + consumed as u64)
}

/// The bytes the container wrote to a stream file after byte `since` of it (whole records).
pub fn raw_output_since(path: &Path, since: u64) -> Vec<u8> {
    let mut records = Vec::new();
    if read_file_records(path, since, &mut records).is_err() {
        return Vec::new();
    }
    records.iter().flat_map(OutputRecord::raw).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_output_of_an_older_monitor_still_reads() {
        let (records, consumed) = parse_records(b"plain line\n5 F rec\nno newline yet");
        assert_eq!(consumed, 19);
        let raw: Vec<u8> = records.iter().flat_map(OutputRecord::raw).collect();
        assert_eq!(raw, b"plain line\nrec\n");
    }

    #[test]
    fn lines_round_trip_and_rotation_keeps_at_most_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let limits = OutputLimits { max_file_bytes: 1000, max_files: 3 };
        let mut writer = RotatingWriter::open(&path, limits).unwrap();
        let mut input = Vec::new();
        for line in 0..500 {
            input.extend_from_slice(format!("line {line}\n").as_bytes());
        }
        input.extend_from_slice(b"no newline \xff");
        copy_stream(&input[..], &mut writer).unwrap();
        let total: u64 =
            (0..4).filter_map(|index| fs::metadata(rotated_path(&path, index)).ok()).map(|m| m.len()).sum();
        assert!(total <= 3 * 1000, "{total} bytes kept");
        assert!(!rotated_path(&path, 3).exists());
        let (records, position) = read_records(&path, ReadPosition::default()).unwrap();
        let raw: Vec<u8> = records.iter().flat_map(OutputRecord::raw).collect();
        assert!(input.ends_with(&raw), "the newest output is kept, in order");
        assert!(raw.ends_with(b"line 499\nno newline \xff"));

        // A follower that stood in the current file finishes it after a rotation, then goes on.
        let mut writer = RotatingWriter::open(&path, limits).unwrap();
        let mut more = Vec::new();
        for line in 0..30 {
            more.extend_from_slice(format!("more {line}\n").as_bytes());
        }
        copy_stream(&more[..], &mut writer).unwrap();
        let (records, _) = read_records(&path, position).unwrap();
        let raw: Vec<u8> = records.iter().flat_map(OutputRecord::raw).collect();
        assert_eq!(raw, more);
    }
}
