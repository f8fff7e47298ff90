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
/// an identity's code (version 12 or so, 65 modules) that fills a third of
/// the photo still has modules of about 5 pixels there, and the search's
/// work, which grows with the pixels and with the square of the finder
/// patterns, stays small.
const SEARCH_SIDE: u32 = 1_000;
/// Rows crossing something shaped like a finder pattern (dark, light,
/// dark three times as wide, light, dark) above which an image is refused
/// before the search: a few QR codes cross a few hundred; an image tiled
/// with finder patterns, made to keep the search busy for minutes,
/// crosses thousands.
const MAX_FINDER_ROWS: usize = 6_000;

/// One search at a time: a costly image delays others instead of
/// multiplying.
static SEARCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let luma = img.to_luma8();
    let finders = finder_rows(&luma);
    if finders > MAX_FINDER_ROWS {
        return Err(ClientError::BadImage(format!(
            "{finders} rows cross shapes like a QR code's corners, more than a photo of a few codes has: crop the photo to the code"
        )));
    }
    let _one = SEARCHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found = search(luma.clone());
    // A small photo whose modules are a pixel or two wide, turned: the
    // grid sampler can miss modules at that size, so a picture with no
    // code read is searched once more at twice the size (still within
    // the search side).
    if found.is_empty() && luma.width().max(luma.height()) * 2 <= SEARCH_SIDE {
        let bigger = image::imageops::resize(
            &luma,
            luma.width() * 2,
            luma.height() * 2,
            image::imageops::FilterType::Triangle,
        );
        return Ok(search(bigger));
    }
    Ok(found)
}

/// The texts of the codes rqrr finds and decodes in `luma`.
fn search(luma: image::GrayImage) -> Vec<String> {
    let mut prepared = rqrr::PreparedImage::prepare(luma);
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, text)| text))
        .collect()
}

/// The one `mtos:id:` URI among a picture's codes: none, or two
/// different ones (which would leave the choice to the order the search
/// found them in), is an error.
pub fn identity_uri(texts: &[String]) -> Result<String, ClientError> {
    let mut uris: Vec<String> = texts
        .iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| t.to_ascii_lowercase().starts_with("mtos:id:"))
        .collect();
    uris.sort_by_key(|u| u.to_ascii_lowercase());
    uris.dedup_by_key(|u| u.to_ascii_lowercase());
    match &uris[..] {
        [one] => Ok(one.clone()),
        [] if texts.is_empty() => Err(ClientError::NotFound(
            "no QR code could be read in this picture (a sharper, closer photo may help)".into(),
        )),
        [] => Err(ClientError::NotFound(format!(
            "this picture holds {} QR code(s), none an mtos:id: URI",
            texts.len()
        ))),
        more => Err(ClientError::Refused(format!(
            "this picture holds {} different identities' codes: crop it to the one you mean",
            more.len()
        ))),
    }
}

/// Rows, over the whole picture, that cross a finder-pattern shape:
/// runs of dark, light, dark, light, dark in the ratio 1:1:3:1:1 (each
/// unit at least 2 pixels, each run within half a unit of its share),
/// dark being below the picture's mean.
fn finder_rows(img: &image::GrayImage) -> usize {
    let (w, h) = img.dimensions();
    let raw = img.as_raw();
    let mean = raw.iter().map(|&p| u64::from(p)).sum::<u64>() / raw.len().max(1) as u64;
    let mut count = 0;
    let mut runs: Vec<(bool, u32)> = Vec::with_capacity(w as usize);
    for y in 0..h {
        runs.clear();
        for x in 0..w {
            let dark = u64::from(img.get_pixel(x, y)[0]) < mean;
            match runs.last_mut() {
                Some((d, n)) if *d == dark => *n += 1,
                _ => runs.push((dark, 1)),
            }
        }
        for win in runs.windows(5) {
            if !win[0].0 {
                continue;
            }
            let total: u32 = win.iter().map(|r| r.1).sum();
            let unit = f64::from(total) / 7.0;
            if unit < 2.0 {
                continue;
            }
            let fits = win
                .iter()
                .zip([1.0, 1.0, 3.0, 1.0, 1.0])
                .all(|((_, n), share)| {
                    (f64::from(*n) - share * unit).abs() <= unit / 2.0 * share.max(1.0)
                });
            if fits {
                count += 1;
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(img: &image::GrayImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A finder pattern's 7×7 modules: dark ring, light ring, dark 3×3.
    fn finder(x: u32, y: u32) -> bool {
        let ring = x.min(y).min(6 - x).min(6 - y);
        ring != 1
    }

    #[test]
    fn an_image_tiled_with_finder_patterns_is_refused_before_the_search() {
        // 3-pixel modules, a pattern every 8 modules: ~1,700 of them.
        let img = image::GrayImage::from_fn(1000, 1000, |x, y| {
            let (mx, my) = ((x / 3) % 8, (y / 3) % 8);
            let dark = mx < 7 && my < 7 && finder(mx, my);
            image::Luma([if dark { 0 } else { 255 }])
        });
        match decode(&png_of(&img)) {
            Err(ClientError::BadImage(why)) => assert!(why.contains("crop"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A real code passes the count, and reads.
        let png = png(&"mtos:id:".to_ascii_uppercase(), 6).unwrap();
        assert_eq!(decode(&png).unwrap(), vec!["MTOS:ID:".to_owned()]);
    }

    #[test]
    fn one_identity_per_picture() {
        let a = "mtos:id:aaaa".to_owned();
        let b = "MTOS:ID:BBBB".to_owned();
        assert_eq!(identity_uri(&[a.clone(), "https://x".into()]).unwrap(), a);
        // The same URI twice, in two cases: one identity.
        assert_eq!(
            identity_uri(&[a.clone(), a.to_uppercase()])
                .unwrap()
                .to_ascii_lowercase(),
            a
        );
        assert!(matches!(
            identity_uri(&[a, b]),
            Err(ClientError::Refused(_))
        ));
        assert!(matches!(identity_uri(&[]), Err(ClientError::NotFound(_))));
        assert!(matches!(
            identity_uri(&["hello".into()]),
            Err(ClientError::NotFound(_))
        ));
    }
}
