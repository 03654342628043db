//! Images: dimensions read from the header, refused above a pixel budget
//! before anything is decoded (a file that declares 50,000 × 50,000 pixels
//! costs a header read, not gigabytes), then a bounded decode and a JPEG
//! thumbnail. Blocking: run on the blocking thread pool.

pub use image::ImageFormat;
use image::{ImageReader, Limits};
use std::io::BufReader;
use std::path::Path;

/// Why an image was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// More pixels than allowed, from the header alone.
    #[error("The image is {width} x {height} pixels; at most {max_pixels} pixels are accepted.")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The budget.
        max_pixels: u64,
    },
    /// Not a readable image of its sniffed type.
    #[error("The image could not be decoded.")]
    Invalid(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The spooled file could not be read.
    #[error("the spooled image could not be read: {0}")]
    Io(#[from] std::io::Error),
}

/// An image's size and its thumbnail.
#[derive(Debug, Clone)]
pub struct Processed {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// A JPEG fitting in `max_side` × `max_side`, aspect ratio kept.
    pub thumbnail: Vec<u8>,
}

/// The `image` format of an allowed image type; `None` for other types.
pub fn format_of(content_type: &str) -> Option<ImageFormat> {
    match content_type {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

fn reader(
    path: &Path,
    format: ImageFormat,
) -> std::io::Result<ImageReader<BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path)?;
    Ok(ImageReader::with_format(BufReader::new(file), format))
}

fn invalid(e: image::ImageError) -> ImageError {
    ImageError::Invalid(Box::new(e))
}

/// Reads the dimensions of the image at `path` (of `format`), refuses it
/// above `max_pixels` (or a side above 65,535), decodes it within that
/// budget and makes a JPEG thumbnail at most `max_side` pixels on its long
/// side (transparency flattened onto white).
pub fn process(
    path: &Path,
    format: ImageFormat,
    max_pixels: u64,
    max_side: u32,
) -> Result<Processed, ImageError> {
    let (width, height) = reader(path, format)?.into_dimensions().map_err(invalid)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels || width > 65_535 || height > 65_535 || pixels == 0 {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    let mut decoder = reader(path, format)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // RGBA at 16 bits per channel, and a margin for the codec's buffers.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder.limits(limits);
    let image = decoder.decode().map_err(invalid)?;
    let small = image.thumbnail(max_side, max_side).to_rgba8();
    let mut rgb = image::RgbImage::new(small.width(), small.height());
    for (out, px) in rgb.pixels_mut().zip(small.pixels()) {
        let [r, g, b, a] = px.0;
        let over_white = |c: u8| {
            let (c, a) = (u16::from(c), u16::from(a));
            u8::try_from((c * a + 255 * (255 - a)) / 255).unwrap_or(255)
        };
        *out = image::Rgb([over_white(r), over_white(g), over_white(b)]);
    }
    let mut thumbnail = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut thumbnail, 80)
        .encode_image(&rgb)
        .map_err(invalid)?;
    Ok(Processed {
        width,
        height,
        thumbnail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32) {
        let img = image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 7, (x % 256) as u8])
        });
        img.save_with_format(path, ImageFormat::Png).expect("png");
    }

    #[test]
    fn a_thumbnail_fits_the_box_and_keeps_the_aspect_ratio() {
        let path = std::env::temp_dir().join(format!("thumb-{}.png", std::process::id()));
        write_png(&path, 640, 480);
        let p = process(&path, ImageFormat::Png, 40_000_000, 320).expect("processed");
        let _ = std::fs::remove_file(&path);
        assert_eq!((p.width, p.height), (640, 480));
        let thumb = image::load_from_memory(&p.thumbnail).expect("jpeg");
        assert_eq!((thumb.width(), thumb.height()), (320, 240));
    }

    #[test]
    fn too_many_pixels_are_refused_from_the_header() {
        let path = std::env::temp_dir().join(format!("big-{}.png", std::process::id()));
        write_png(&path, 300, 200);
        let refused = process(&path, ImageFormat::Png, 10_000, 320);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(
            refused,
            Err(ImageError::TooLarge {
                width: 300,
                height: 200,
                ..
            })
        ));
    }
}
