//! Checkpoints: a VarStore as safetensors, identified by the SHA-256 of the
//! file so scores can record which model made them.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use tch::nn::VarStore;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {0} must have the .safetensors extension")]
    Extension(String),
    #[error("checkpoint I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("checkpoint tensors: {0}")]
    Tch(#[from] tch::TchError),
}

fn check_ext(path: &Path) -> Result<(), CheckpointError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(()),
        // tch picks the format from the extension; anything else would be a TorchScript archive.
        _ => Err(CheckpointError::Extension(path.display().to_string())),
    }
}

/// Write all variables of `vs` (weights and BN statistics) to `path`
/// atomically (temporary file + rename); returns the content hash.
pub fn save(vs: &VarStore, path: &Path) -> Result<String, CheckpointError> {
    check_ext(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.safetensors"));
    vs.save(&tmp)?;
    std::fs::rename(&tmp, path)?;
    content_hash(path)
}

/// Load `path` into `vs` (which must hold a net of the same architecture);
/// returns the content hash of what was loaded.
pub fn load(vs: &mut VarStore, path: &Path) -> Result<String, CheckpointError> {
    check_ext(path)?;
    // Hash first: the hash names the bytes that were actually read.
    let hash = content_hash(path)?;
    vs.load(path)?;
    Ok(hash)
}

/// SHA-256 of the file, lowercase hex.
pub fn content_hash(path: &Path) -> Result<String, CheckpointError> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::net::{Net, NetConfig};
    use tch::{Device, Kind, Tensor, nn};

    #[test]
    fn round_trip_gives_identical_outputs() {
        tch::manual_seed(0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let cfg = NetConfig::tiny(5, 2);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &cfg);
        let x = Tensor::randn([4, 5, 32, 32], (Kind::Float, Device::Cpu));
        // A train-mode pass moves the BN running statistics away from their init,
        // so the test also covers non-trainable buffers.
        let _ = net.forward_t(&x, true);
        let before = tch::no_grad(|| net.forward_t(&x, false));
        let h1 = save(&vs, &path).unwrap();
        assert_eq!(h1.len(), 64);

        tch::manual_seed(99);
        let mut vs2 = nn::VarStore::new(Device::Cpu);
        let net2 = Net::new(&vs2.root(), &cfg);
        assert!(!tch::no_grad(|| net2.forward_t(&x, false)).equal(&before));
        let h2 = load(&mut vs2, &path).unwrap();
        assert_eq!(h1, h2);
        assert!(tch::no_grad(|| net2.forward_t(&x, false)).equal(&before));
        // Saving the same weights again gives the same bytes, hence the same hash.
        let path2 = dir.path().join("again.safetensors");
        assert_eq!(save(&vs2, &path2).unwrap(), h1);
        assert!(matches!(save(&vs, &dir.path().join("m.pt")), Err(CheckpointError::Extension(_))));
    }
}
