//! Optional CPU placement: the proxies on CPUs of their own and the load generator with the
//! brokers on the others, to compare the proxies as if each had cores to itself (by default
//! everything shares every core).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::process::Command;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

/// A command that runs `program` on `cpus` when given. `taskset` executes it in its own place,
/// so the child's pid is the program's.
pub fn command_on(cpus: Option<&CpuList>, program: impl AsRef<OsStr>) -> Command {
    let Some(cpus) = cpus else {
        return Command::new(program);
    };
    let mut command = Command::new("taskset");
    command.arg("-c").arg(&cpus.text).arg(program);
    command
}

/// A `taskset` CPU list (`0`, `0-1`, `0,2-3`) and how many CPUs it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList {
    text: String,
    count: usize,
}

impl FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<CpuList, String> {
        let bad = || format!("{text:?} is not a CPU list such as 0, 0-1 or 0,2-3");
        // A set, so that CPUs listed twice (`0,0-1`) count once.
        let mut cpus = BTreeSet::new();
        for part in text.split(',') {
            let (first, last) = part.split_once('-').unwrap_or((part, part));
            let first: usize = first.parse().map_err(|_| bad())?;
            let last: usize = last.parse().map_err(|_| bad())?;
            if last < first {
                return Err(bad());
            }
            cpus.extend(first..=last);
        }
        Ok(CpuList {
            text: text.to_owned(),
            count: cpus.len(),
        })
    }
}

impl std::fmt::Display for CpuList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl CpuList {
    /// How many CPUs the list names.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Pins the process's main thread to these CPUs (`taskset -p` on the process id), and with
    /// it every thread and process it starts afterwards. Called from `main` before any other
    /// thread starts.
    pub fn pin_main_thread(&self) -> Result<()> {
        let status = Command::new("taskset")
            .args(["-p", "-c", &self.text, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running taskset (util-linux)")?;
        if !status.success() {
            bail!(
                "taskset could not pin the load generator to CPUs {}",
                self.text
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_their_cpus() {
        let count = |text: &str| text.parse::<CpuList>().map(|list| list.count());
        assert_eq!(count("0"), Ok(1));
        assert_eq!(count("0-1"), Ok(2));
        assert_eq!(count("0,2-3"), Ok(3));
        assert_eq!(count("0,0-1"), Ok(2));
        for bad in ["", "a", "1-0", "0-", "0,,1"] {
            assert!(count(bad).is_err(), "{bad:?}");
        }
        assert_eq!("0,2-3".parse::<CpuList>().unwrap().to_string(), "0,2-3");
    }
}
