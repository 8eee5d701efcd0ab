//! Learning with libtorch (tch): the EfficientNet-Lite classifier (`net`),
//! fractal pretraining data (`fractal`), pretraining and FixMatch (`train`,
//! `augment`), batched inference (`infer`) and safetensors checkpoints
//! (`checkpoint`), all on the device from [`device()`].
//!
//! Pure library functions: the caller streams images as normalised f32
//! tensors N x C x H x W; nothing here touches the store.

pub mod augment;
pub mod checkpoint;
pub mod embed;
pub mod feed;
pub mod fractal;
pub mod infer;
pub mod net;
mod stage;
pub mod train;

pub use crate::retrain::{RetrainReport, gate, last_report, lock, retrain_running};
pub use feed::normalise;
pub use stage::{
    LearnError, NetSize, RetrainOptions, auto_pretrain_params, pretrain_store, read_status, retrain, write_status,
};

/// The device training and inference run on: CUDA when present, else CPU.
pub fn device() -> tch::Device {
    tch::Device::cuda_if_available()
}

/// One line for `oddity status`: device, GPU count and CPU threads.
pub fn device_summary() -> String {
    match device() {
        tch::Device::Cuda(i) => format!("cuda:{i} ({} GPU(s) visible)", tch::Cuda::device_count()),
        _ => format!("cpu ({} threads; no CUDA device)", tch::get_num_threads()),
    }
}

/// Serialises tests that seed torch's one global generator and depend on
/// what it draws: tests run on parallel threads, and another test's draws
/// in between would change theirs.
#[cfg(test)]
pub(crate) fn seeded_torch() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn libtorch_loads_and_computes_without_ld_library_path() {
        // The rpath from build.rs is what makes this load; CI sets no LD_LIBRARY_PATH.
        let a = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
        let b = a.matmul(&a);
        let v: Vec<f32> = b.flatten(0, 1).try_into().unwrap();
        assert_eq!(v, vec![7.0, 10.0, 15.0, 22.0]);
        assert!(!super::device_summary().is_empty());
    }
}
