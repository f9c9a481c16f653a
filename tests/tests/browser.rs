//! The gallery page (`GET /`) in a real browser: Debian's headless Chromium loads it
//! from a running canard-serve, and the DOM it leaves behind must show that every
//! tile's image was decoded (the page marks a tile `data-loaded="1"` only from the
//! image's `load` event with `naturalWidth > 0`). A screenshot is kept in
//! `target/browser-test/` for people to look at.
//!
//! Chromium is required: without it this test fails and names `make setup-browser`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canard_e2e::{serve, train_tiny, train_tiny_with, workspace_root};

/// Tiles on the gallery's first page (`PAGE` in serve/src/gallery/index.html).
const FIRST_PAGE: u64 = 48;
/// Pixels the page asks for per tile (`TILE_SIZE` there).
const TILE_SIZE: &str = "128";

fn chromium() -> PathBuf {
    let path = std::env::var_os("CANARD_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "Chromium is not installed at {}: run `make setup-browser` (it installs Debian's `chromium` package), \
         or point CANARD_CHROMIUM at a Chromium binary",
        path.display()
    );
    path
}

/// Where the screenshots go: `target/browser-test/`.
fn artefacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let dir = target.join("browser-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `extra` flags and a fresh profile; returns
/// its stdout. Virtual time does not advance while requests are pending, so the
/// budget is reached only once the page has settled.
fn chromium_run(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .current_dir(out.path())
        .stdout(Stdio::from(std::fs::File::create(out.path().join("stdout")).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(out.path().join("stderr")).unwrap()))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run Chromium ({e}): run `make setup-browser`"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // The wrapper script's children share its process group.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!(
                "Chromium did not finish {url} within 120 s; its stderr:\n{}",
                std::fs::read_to_string(out.path().join("stderr")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(out.path().join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(out.path().join("stderr")).unwrap();
    assert!(status.success(), "Chromium failed on {url} ({status}):\n{stderr}");
    stdout
}

/// The opening tags named `tag` in serialised HTML, e.g. every `<figure ...>`.
fn tags<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    html.match_indices(&open)
        .map(|(i, _)| {
            let rest = &html[i..];
            &rest[..rest.find('>').map_or(rest.len(), |e| e + 1)]
        })
        .collect()
}

/// The value of `name="..."` in one opening tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// The one opening tag with `id="id"`.
fn by_id<'a>(html: &'a str, tag: &str, id: &str) -> &'a str {
    tags(html, tag)
        .into_iter()
        .find(|t| attr(t, "id") == Some(id))
        .unwrap_or_else(|| panic!("no <{tag} id={id:?}> in the page:\n{html}"))
}

/// The committed demo model when there is one, else a tiny one trained here.
fn models_dir(tmp: &Path) -> (PathBuf, String) {
    let committed = workspace_root().join("models");
    if committed.join("demo/model.json").is_file() {
        return (committed, "demo".into());
    }
    train_tiny(tmp, "tiny");
    (tmp.join("models"), "tiny".into())
}

/// Decodes a screenshot and checks it is a real picture of the page: the window's
/// size and more than a handful of colours (a blank or error page has very few).
fn check_screenshot(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert!(bytes.len() > 10_000, "{} is only {} bytes", path.display(), bytes.len());
    let img = image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    assert_eq!((img.width(), img.height()), (1280, 900), "{}", path.display());
    let rgb = img.to_rgb8();
    let mut colours: Vec<[u8; 3]> = rgb.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 256, "{} has only {} colours: is the page empty?", path.display(), colours.len());
}

#[test]
fn the_gallery_renders_generated_images_in_chromium() {
    chromium(); // fail first, and clearly, without a browser
    let tmp = tempfile::tempdir().unwrap();
    let (models, model) = models_dir(tmp.path());
    let server = serve(&models, &["--model", &model]);
    let page = server.get("/");
    assert_eq!(page.status, 200, "GET / : {}", String::from_utf8_lossy(&page.body));
    assert!(page.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{:?}", page.headers);
    let base = format!("http://{}", server.addr);

    // The grid: every tile of the first page decoded, at the size asked for.
    let dom = chromium_run(&format!("{base}/"), &["--dump-dom"]);
    let body = tags(&dom, "body").into_iter().next().expect("a <body>");
    assert_eq!(attr(body, "data-ready"), Some("1"), "the first page never finished loading: {body}");
    assert_eq!(attr(body, "data-failed"), Some("0"), "some tiles failed: {body}");
    // The scroll sentinel sits within the observer's 600 px margin of a 900 px window
    // after one page, so the IntersectionObserver must have asked for a second one.
    let tiles = tags(&dom, "figure");
    assert!(tiles.len() as u64 >= 2 * FIRST_PAGE, "{} tiles: the second page never loaded", tiles.len());
    assert_eq!(attr(body, "data-loaded"), Some(tiles.len().to_string().as_str()), "every tile rendered: {body}");
    assert!(tiles.iter().all(|t| attr(t, "data-loaded") == Some("1")), "every tile is marked loaded");
    for seed in 0..FIRST_PAGE {
        let id = format!("tile-{seed}");
        let tile = by_id(&dom, "figure", &id);
        assert_eq!(attr(tile, "data-seed"), Some(seed.to_string().as_str()), "{tile}");
        assert_eq!(attr(tile, "data-loaded"), Some("1"), "seed {seed} did not render: {tile}");
        let img = by_id(&dom, "img", &format!("img-{seed}"));
        assert_eq!(attr(img, "data-natural-width"), Some(TILE_SIZE), "seed {seed}: {img}");
        let src = attr(img, "src").unwrap_or_default().replace("&amp;", "&");
        assert_eq!(src, format!("/generate?seed={seed}&size={TILE_SIZE}&model={model}"), "{img}");
    }
    let lb = by_id(&dom, "div", "lightbox");
    assert_eq!(attr(lb, "class"), None, "the large view starts closed: {lb}");
    // The class picker shows only for a model of classes (the committed demo's are its shapes' kinds).
    let has_classes = server.get(&format!("/models/{model}")).json()["classes"].is_array();
    let hidden = attr(by_id(&dom, "label", "class-picker"), "hidden");
    assert_eq!(hidden.is_none(), has_classes, "the class picker is shown only for a model of classes");

    // The large view and the interpolation strip, from a shared link.
    let dom = chromium_run(&format!("{base}/?start=5&a=5&b=9#seed=7"), &["--dump-dom"]);
    let body = tags(&dom, "body").into_iter().next().expect("a <body>");
    assert_eq!(attr(body, "data-ready"), Some("1"), "{body}");
    assert!(by_id(&dom, "figure", "tile-5").contains(r#"class="tile is-a""#), "seed 5 is marked A");
    assert!(by_id(&dom, "figure", "tile-9").contains(r#"class="tile is-b""#), "seed 9 is marked B");
    assert_eq!(attr(by_id(&dom, "div", "lightbox"), "class"), Some("open"));
    let big = by_id(&dom, "div", "lb-frame");
    assert_eq!((attr(big, "data-seed"), attr(big, "data-loaded")), (Some("7"), Some("1")), "the large view: {big}");
    assert_eq!(attr(by_id(&dom, "img", "lb-img"), "data-natural-width"), Some("512"));
    let link = attr(by_id(&dom, "a", "lb-link"), "href").unwrap().replace("&amp;", "&");
    assert_eq!(link, format!("{base}/generate?seed=7&model={model}"), "the permalink");
    let strip = by_id(&dom, "div", "lerp-frame");
    assert_eq!(attr(strip, "data-loaded"), Some("1"), "the interpolation strip did not render: {strip}");
    let gif = attr(by_id(&dom, "a", "lerp-gif"), "href").unwrap().replace("&amp;", "&");
    assert!(gif.starts_with("/interpolate?from=5&to=9&steps=8&format=gif"), "{gif}");
    let r = server.get(&gif);
    assert_eq!(r.status, 200, "{gif}: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("image/gif"), "{gif}");

    // Screenshots, for people.
    let dir = artefacts();
    for (name, url) in [("gallery.png", format!("{base}/")), ("lightbox.png", format!("{base}/?a=3&b=12#seed=12"))] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        chromium_run(&url, &[&format!("--screenshot={}", path.display())]);
        check_screenshot(&path);
        eprintln!("screenshot: {}", path.display());
    }
}

/// A model with classes: the class picker lists them, `?class=` puts every tile, the large
/// view and its permalink in that class, and an unknown class is named in a notice while
/// the tiles show each seed's own class.
#[test]
fn the_gallery_picks_a_class_on_a_model_with_classes() {
    chromium();
    let tmp = tempfile::tempdir().unwrap();
    train_tiny_with(tmp.path(), "kinds", &["--classes", "subfolders"]);
    let server = serve(&tmp.path().join("models"), &["--model", "kinds"]);
    let base = format!("http://{}", server.addr);

    let dom = chromium_run(&format!("{base}/?class=ring#seed=3"), &["--dump-dom"]);
    let body = tags(&dom, "body").into_iter().next().expect("a <body>");
    assert_eq!((attr(body, "data-ready"), attr(body, "data-failed")), (Some("1"), Some("0")), "{body}");
    assert_eq!(attr(by_id(&dom, "label", "class-picker"), "hidden"), None, "the picker is shown");
    let picker = &dom[dom.find(r#"<select id="class-select""#).expect("the class picker")..];
    let picker = &picker[..picker.find("</select>").unwrap()];
    let options: Vec<&str> = tags(picker, "option").into_iter().filter_map(|o| attr(o, "value")).collect();
    assert_eq!(options, ["", "circle", "square", "triangle", "ring", "cross"], "each seed's own, then the classes");
    for seed in [0, 47] {
        let img = by_id(&dom, "img", &format!("img-{seed}"));
        let src = attr(img, "src").unwrap_or_default().replace("&amp;", "&");
        assert_eq!(src, format!("/generate?seed={seed}&size={TILE_SIZE}&model=kinds&class=ring"), "{img}");
        assert_eq!(attr(by_id(&dom, "figure", &format!("tile-{seed}")), "data-loaded"), Some("1"));
    }
    assert!(dom.contains(r#"<dd id="lb-class">ring</dd>"#), "the large view names the class");
    let link = attr(by_id(&dom, "a", "lb-link"), "href").unwrap().replace("&amp;", "&");
    assert_eq!(link, format!("{base}/generate?seed=3&model=kinds&class=ring"));
    let r = server.get("/generate?seed=3&model=kinds&class=ring");
    assert_eq!((r.status, r.header("x-class")), (200, Some("ring")));

    let dom = chromium_run(&format!("{base}/?class=heron"), &["--dump-dom"]);
    let notice = &dom[dom.find(r#"<div id="notice""#).expect("a notice")..];
    assert!(notice[..notice.find("</div>").unwrap()].contains("There is no class \"heron\""), "{notice}");
    let src = attr(by_id(&dom, "img", "img-0"), "src").unwrap_or_default().replace("&amp;", "&");
    assert_eq!(src, format!("/generate?seed=0&size={TILE_SIZE}&model=kinds"), "each seed's own class");
}
