//! Every bound on what one request may ask for, in one place (the README's table
//! mirrors this file). They exist so that nothing a client sends can make the server
//! allocate or compute without bound: each is checked before any inference runs.

/// Longest query string accepted, in bytes. 64 seeds of 20 digits fit with room to spare,
/// and a `latent=` of 1,024 values (5,464 characters of base64, more where escaped).
pub const MAX_QUERY_BYTES: usize = 8192;
/// Most bytes of request headers (each name, value, `: ` and line end), answered 431
/// beyond: what nginx passes with its defaults (4 buffers of 8 KiB), so nothing the
/// proxy of `deploy/` forwards is refused. (actix itself refuses heads over 128 KiB.)
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most pictures one request may generate (`n`, `seeds`).
pub const MAX_IMAGES: usize = 64;
/// Smallest and largest `size` (the side of each output picture, in pixels).
pub const MIN_SIZE: u32 = 1;
pub const MAX_SIZE: u32 = 1024;
/// `steps` of `/interpolate`.
pub const MIN_STEPS: usize = 2;
pub const MAX_STEPS: usize = 64;
pub const DEFAULT_STEPS: usize = 8;
/// Most pixels in one response (a grid, or all frames of a GIF together), and also
/// most pixels the model generates for one request: 4096².
pub const MAX_PIXELS: u64 = 4096 * 4096;
/// Black border between and around the pictures of a grid or strip, as in the
/// trainer's sample grids.
pub const GRID_PAD: u32 = 2;
/// JPEG quality (fixed, so equal requests give equal bytes).
pub const JPEG_QUALITY: u8 = 90;
/// Time each GIF frame is shown.
pub const GIF_FRAME_MS: u32 = 100;
