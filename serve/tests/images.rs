//! What `/generate` and `/interpolate` draw: formats, sizes, grids, truncation,
//! interpolation endpoints and the GIF's frames, decoded and checked.

mod support;

use std::io::Cursor;

use canard_serve::app::AppState;
use image::{AnimationDecoder, DynamicImage, GenericImageView, RgbImage};
use support::{hv as header, two_models, SIZE};

const S: u32 = SIZE as u32;

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

/// Tile `i` of a grid of `cols` columns of `size`² tiles with 2 px borders.
fn tile(grid: &RgbImage, i: u32, cols: u32, size: u32) -> RgbImage {
    let (x, y) = (2 + (i % cols) * (size + 2), 2 + (i / cols) * (size + 2));
    image::imageops::crop_imm(grid, x, y, size, size).to_image()
}

#[actix_web::test]
async fn formats_decode_to_the_right_size_and_size_resamples() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    for (format, mime) in [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp")] {
        for (size, side) in [("", S), ("&size=20", 20), ("&size=3", 3)] {
            let uri = format!("/generate?seed=5&format={format}{size}");
            let (res, body) = get!(&app, &uri);
            assert_eq!(header(&res, "content-type"), mime, "{uri}");
            assert_eq!(image::guess_format(&body).unwrap().to_mime_type(), mime, "{uri}");
            assert_eq!(decode(&body).dimensions(), (side, side), "{uri}");
            assert_eq!(get!(&app, &uri).1, body, "{uri}: same request, same bytes");
        }
    }
    // Lossless formats carry the same pixels; size equal to the model's is no resampling.
    let (_, png) = get!(&app, "/generate?seed=5");
    let (_, webp) = get!(&app, "/generate?seed=5&format=webp");
    assert_eq!(decode(&png).to_rgb8(), decode(&webp).to_rgb8());
    assert_eq!(get!(&app, &format!("/generate?seed=5&size={S}")).1, png);
    // Upsampling with a real filter makes new in-between colours, not just repeats.
    let big = decode(&get!(&app, "/generate?seed=5&size=32").1).to_rgb8();
    let distinct = |img: &RgbImage| img.pixels().map(|p| p.0).collect::<std::collections::HashSet<_>>().len();
    assert!(distinct(&big) > distinct(&decode(&png).to_rgb8()), "Lanczos makes intermediate colours");
}

#[actix_web::test]
async fn grids_have_the_promised_shape_and_tiles() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let side = |cols: u32| cols * (S + 2) + 2;
    for (query, cols, rows) in
        [("seeds=1,2,3,4", 2, 2), ("seed=10&n=5", 3, 2), ("seeds=100-163", 8, 8), ("seeds=7,7", 2, 1), ("n=3", 2, 2)]
    {
        let (_, body) = get!(&app, &format!("/generate?{query}"));
        assert_eq!(decode(&body).dimensions(), (side(cols), side(rows)), "{query}");
    }
    let (res, grid) = get!(&app, "/generate?seeds=100-163");
    assert_eq!(header(&res, "x-seed"), "100");
    assert!(header(&res, "x-seeds").starts_with("100,101,102,"));
    let grid = decode(&grid).to_rgb8();
    for (i, seed) in [(0, 100), (9, 109), (63, 163)] {
        let single = decode(&get!(&app, &format!("/generate?seed={seed}")).1).to_rgb8();
        assert_eq!(tile(&grid, i, 8, S), single, "tile {i} is seed {seed}");
    }
    assert_eq!(get!(&app, "/generate?seed=10&n=3").1, get!(&app, "/generate?seeds=10-12").1);
    // Resized grids: tiles of `size`.
    let (_, body) = get!(&app, "/generate?seeds=1-4&size=16");
    assert_eq!(decode(&body).dimensions(), (2 * 18 + 2, 2 * 18 + 2));
    // A random grid reports its consecutive seeds, which reproduce it.
    let (res, random) = get!(&app, "/generate?n=4");
    let seeds: Vec<u64> = header(&res, "x-seeds").split(',').map(|s| s.parse().unwrap()).collect();
    assert_eq!(seeds.len(), 4);
    assert!(seeds.windows(2).all(|w| w[1] == w[0] + 1));
    let again = get!(&app, &format!("/generate?seeds={}", header(&res, "x-seeds"))).1;
    assert_eq!(again, random);
}

#[actix_web::test]
async fn truncation_changes_the_picture_and_one_is_the_identity() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let (plain_res, plain) = get!(&app, "/generate?seed=3");
    let (one_res, one) = get!(&app, "/generate?seed=3&truncation=1");
    assert_eq!(plain, one);
    assert_eq!(header(&plain_res, "etag"), header(&one_res, "etag"), "normalised: ψ=1 is no truncation");
    let (half_res, half) = get!(&app, "/generate?seed=3&truncation=0.5");
    assert_ne!(half, plain);
    assert_ne!(header(&half_res, "etag"), header(&plain_res, "etag"));
}

#[actix_web::test]
async fn interpolation_strips_start_and_end_at_the_two_seeds() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    for (extra, steps) in [("", 8), ("&steps=4&truncation=0.7", 4), ("&steps=2&model=other", 2)] {
        let (res, strip) = get!(&app, &format!("/interpolate?from=11&to=22{extra}"));
        assert_eq!(header(&res, "content-type"), "image/png");
        let strip = decode(&strip).to_rgb8();
        assert_eq!(strip.dimensions(), (steps * (S + 2) + 2, S + 4), "{extra}");
        let params = extra.replace("&steps=4", "").replace("&steps=2", "");
        let first = decode(&get!(&app, &format!("/generate?seed=11{params}")).1).to_rgb8();
        let last = decode(&get!(&app, &format!("/generate?seed=22{params}")).1).to_rgb8();
        assert_eq!(tile(&strip, 0, steps, S), first, "t=0 is seed 11 {extra}");
        assert_eq!(tile(&strip, steps - 1, steps, S), last, "t=1 is seed 22 {extra}");
        if steps > 2 {
            assert_ne!(tile(&strip, 1, steps, S), first, "in between differs {extra}");
        }
    }
    let (_, jpeg) = get!(&app, "/interpolate?from=1&to=2&format=jpeg&size=16&steps=3");
    assert_eq!(decode(&jpeg).dimensions(), (3 * 18 + 2, 20));
}

#[actix_web::test]
async fn interpolation_gifs_go_there_and_back_forever() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    for (steps, size) in [(5u32, S), (2, 24), (8, 12)] {
        let uri = format!("/interpolate?from=1&to=2&steps={steps}&format=gif&size={size}");
        let (res, gif) = get!(&app, &uri);
        assert_eq!(header(&res, "content-type"), "image/gif");
        assert!(gif.windows(11).any(|w| w == b"NETSCAPE2.0"), "loops");
        let decoder = image::codecs::gif::GifDecoder::new(Cursor::new(&gif)).unwrap();
        let frames = decoder.into_frames().collect_frames().unwrap();
        assert_eq!(frames.len() as u32, 2 * steps - 2, "{uri}");
        assert!(frames.iter().all(|f| f.buffer().dimensions() == (size, size)), "{uri}");
        // There and back: frame k and frame 2*steps-2-k show the same point.
        let n = frames.len();
        for k in 1..steps as usize {
            assert_eq!(frames[k].buffer(), frames[(n - k) % n].buffer(), "{uri}: frame {k}");
        }
        assert_eq!(get!(&app, &uri).1, gif, "deterministic");
    }
}
