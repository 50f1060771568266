//! The views' records of a run written on a thread of their own, while the
//! generator goes on with the next units: the first run after boot writes
//! a record for every closure (about 28 KiB each, a hundred on the
//! benchmark system), which took 2–3 ms of that run when written in turn.
//! A speed device, kept while the generation benchmark shows what it buys
//! (see benches/README.md). The caller waits for [`RecordWriter::finish`]
//! before it writes a drop-in that names one of these records.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

/// A file to write: its name, the temporary name it is written under, its
/// text.
type Queued = (String, String, String);

/// A thread writing whole files into one directory.
pub struct RecordWriter {
    queue: Sender<Queued>,
    thread: JoinHandle<Vec<(String, std::io::Error)>>,
}

impl RecordWriter {
    /// Starts the thread, which writes into `dir` (a descriptor of its own).
    pub fn start(dir: OwnedFd) -> std::io::Result<RecordWriter> {
        let (queue, files) = channel::<Queued>();
        let thread = std::thread::Builder::new()
            .name("records".into())
            .spawn(move || {
                let mut failed = Vec::new();
                for (name, temporary, text) in files {
                    if let Err(error) =
                        crate::scratch::write_whole_at(&dir, &name, &temporary, |file| {
                            file.write_all(text.as_bytes())
                        })
                    {
                        failed.push((name, error));
                    }
                }
                failed
            })?;
        Ok(RecordWriter { queue, thread })
    }

    /// Queues the file `name` with `text`, written under the name
    /// `temporary` and renamed into place (see
    /// [`crate::scratch::write_whole_at`]).
    pub fn write(&self, name: String, temporary: String, text: String) {
        // The thread stops only when the queue is dropped (or it panicked,
        // which aborts the process): sending does not fail.
        let _ = self.queue.send((name, temporary, text));
    }

    /// Waits until every queued file is written; the files that could not
    /// be, and why.
    pub fn finish(self) -> Vec<(String, std::io::Error)> {
        drop(self.queue);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queued_file_is_written_whole_and_failures_are_named() {
        let dir = crate::test_dirs::fresh("record-writer");
        let open = || {
            nix::fcntl::open(
                dir.as_std_path(),
                nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY,
                nix::sys::stat::Mode::empty(),
            )
            .unwrap()
        };
        let writer = RecordWriter::start(open()).unwrap();
        for i in 0..20 {
            writer.write(
                format!("r{i}"),
                format!(".r{i}.tmp"),
                "x".repeat(30_000 + i),
            );
        }
        // A name that cannot be a file in the directory.
        writer.write("no/such/dir".into(), ".no-such.tmp".into(), "y".into());
        let failed = writer.finish();
        for i in 0..20 {
            assert_eq!(
                std::fs::read_to_string(dir.join(format!("r{i}"))).unwrap(),
                "x".repeat(30_000 + i)
            );
        }
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "no/such/dir");
        // Nothing else is left: no temporary file.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 20);
    }
}
