//! `evaluate --video OUT.gif`: the frames an env draws (its `render_rgb`),
//! written as an animated GIF that loops. Each frame gets its own palette
//! (NeuQuant, from the `gif` crate); the file is written next to `OUT` and
//! renamed into place when complete, so an interrupted recording leaves no
//! half file under the name asked for.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rl_env::Frame;

/// An animated GIF being written.
pub struct GifRecorder {
    path: PathBuf,
    partial: PathBuf,
    encoder: Option<gif::Encoder<BufWriter<File>>>,
    size: (usize, usize),
    delay_cs: u16,
    pub frames: usize,
}

impl GifRecorder {
    /// A recorder for `path` (which must end in `.gif`) at `fps` frames a
    /// second.
    pub fn new(path: &Path, fps: f64) -> Result<Self, String> {
        if path.extension().and_then(|e| e.to_str()) != Some("gif") {
            return Err(format!(
                "--video {}: only GIF is written; give a file name ending in .gif",
                path.display()
            ));
        }
        if !(fps.is_finite() && (1.0..=100.0).contains(&fps)) {
            return Err(format!("--video-fps {fps}: expected 1 to 100"));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let partial = path.with_file_name(format!(".{name}.partial"));
        Ok(GifRecorder {
            path: path.to_path_buf(),
            partial,
            encoder: None,
            size: (0, 0),
            delay_cs: (100.0 / fps).round().max(1.0) as u16,
            frames: 0,
        })
    }

    /// Appends a frame; every frame must have the first one's size.
    pub fn push(&mut self, frame: &Frame) -> Result<(), String> {
        let (w, h) = (frame.width, frame.height);
        if w == 0
            || h == 0
            || w > u16::MAX as usize
            || h > u16::MAX as usize
            || frame.rgb.len() != w * h * 3
        {
            return Err(format!(
                "a frame of {w}x{h} with {} bytes cannot be written as GIF",
                frame.rgb.len()
            ));
        }
        if self.encoder.is_none() {
            let file = File::create(&self.partial)
                .map_err(|e| format!("{}: {e}", self.partial.display()))?;
            let mut encoder = gif::Encoder::new(BufWriter::new(file), w as u16, h as u16, &[])
                .map_err(|e| format!("{}: {e}", self.partial.display()))?;
            encoder
                .set_repeat(gif::Repeat::Infinite)
                .map_err(|e| format!("{}: {e}", self.partial.display()))?;
            self.encoder = Some(encoder);
            self.size = (w, h);
        }
        if (w, h) != self.size {
            return Err(format!(
                "the env drew a {w}x{h} frame after {}x{} ones; a video needs one size",
                self.size.0, self.size.1
            ));
        }
        let mut gif_frame = gif::Frame::from_rgb_speed(w as u16, h as u16, &frame.rgb, 10);
        gif_frame.delay = self.delay_cs;
        if let Some(encoder) = self.encoder.as_mut() {
            encoder
                .write_frame(&gif_frame)
                .map_err(|e| format!("{}: {e}", self.partial.display()))?;
        }
        self.frames += 1;
        Ok(())
    }

    /// Finishes the file and puts it in place; returns its path.
    pub fn finish(mut self) -> Result<PathBuf, String> {
        let encoder = self.encoder.take().ok_or("no frame was drawn")?;
        let writer = encoder
            .into_inner()
            .map_err(|e| format!("{}: {e}", self.partial.display()))?;
        let file = writer
            .into_inner()
            .map_err(|e| format!("{}: {e}", self.partial.display()))?;
        file.sync_all()
            .map_err(|e| format!("{}: {e}", self.partial.display()))?;
        std::fs::rename(&self.partial, &self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(self.path.clone())
    }
}

impl Drop for GifRecorder {
    fn drop(&mut self) {
        if self.encoder.is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
