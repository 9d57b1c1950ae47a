//! placeholder until the ELF closure lands
use std::path::PathBuf;
/// closure
#[derive(Debug, Clone)]
pub struct Closure {
    /// f
    pub files: Vec<PathBuf>,
    /// i
    pub interpreters: Vec<PathBuf>,
    /// m
    pub missing: Vec<(PathBuf, String)>,
}
/// e
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// n
    #[error("{} is not an ELF file", path.display())]
    NotElf {
        /// p
        path: PathBuf,
    },
}
/// c
pub fn closure(binaries: &[PathBuf]) -> Result<Closure, ElfError> {
    Ok(Closure { files: binaries.to_vec(), interpreters: vec![], missing: vec![] })
}
