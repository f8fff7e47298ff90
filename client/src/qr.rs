//! QR codes both ways (`mtos id show --png`, `mtos contact add
//! --qr-image`): an identity URI drawn as a PNG, and the codes found in a
//! photo or screenshot of one, at any angle and scale.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, Luma};
use qrcode::{EcLevel, QrCode};

use crate::error::ClientError;

/// An image file larger than this is refused before it is decoded.
pub const MAX_IMAGE_FILE: u64 = 32 << 20;
/// Widest and tallest image decoded (a 48-megapixel photo fits).
const MAX_SIDE: u32 = 10_000;
/// Memory the decoder may take.
const MAX_ALLOC: u64 = 512 << 20;
/// Longest side a photo is scaled down to before codes are looked for:
/// a QR code that fills a tenth of a phone photo still has modules of
/// several pixels there, and the search stays fast.
const SEARCH_SIDE: u32 = 2_000;

/// `text` as a QR code (error correction M, the alphanumeric mode for an
/// uppercase URI) in a PNG, `scale` pixels a module, with its quiet zone.
pub fn png(text: &str, scale: u32) -> Result<Vec<u8>, ClientError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| ClientError::Refused(format!("cannot draw the QR code: {e}")))?;
    let img = code
        .render::<Luma<u8>>()
        .module_dimensions(scale.max(1), scale.max(1))
        .quiet_zone(true)
        .build();
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .map_err(|e| ClientError::Refused(format!("cannot write the PNG: {e}")))?;
    Ok(out.into_inner())
}

/// The texts of the QR codes in an image (PNG or JPEG), in the order
/// found; codes that do not decode are skipped.
pub fn decode(bytes: &[u8]) -> Result<Vec<String>, ClientError> {
    let bad = ClientError::BadImage;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| bad(e.to_string()))?;
    let img = if img.width().max(img.height()) > SEARCH_SIDE {
        img.resize(
            SEARCH_SIDE,
            SEARCH_SIDE,
            image::imageops::FilterType::Triangle,
        )
    } else {
        img
    };
    let mut prepared = rqrr::PreparedImage::prepare(img.to_luma8());
    Ok(prepared
        .detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, text)| text))
        .collect())
}
