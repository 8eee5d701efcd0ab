use super::*;

/// Deterministic standard normal deviates (xorshift + Box–Muller).
fn normals(n: usize, mut seed: u64) -> Vec<f32> {
    let mut uniform = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n).map(|_| ((-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()) as f32).collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A round Gaussian galaxy at the centre of an `s × s` cutout, one band per
/// entry of `fluxes` (peak values), plus unit Gaussian sky noise × `noise`.
fn galaxy(s: usize, fluxes: &[f32], noise: f32, seed: u64) -> Vec<f32> {
    let c = (s as f32 - 1.0) / 2.0;
    let sigma = s as f32 / 10.0;
    let noise_px = normals(fluxes.len() * s * s, seed);
    let mut out = Vec::with_capacity(fluxes.len() * s * s);
    for (b, &peak) in fluxes.iter().enumerate() {
        for r in 0..s {
            for col in 0..s {
                let d2 = (r as f32 - c).powi(2) + (col as f32 - c).powi(2);
                out.push(peak * (-d2 / (2.0 * sigma * sigma)).exp() + noise * noise_px[(b * s + r) * s + col]);
            }
        }
    }
    out
}

fn gri() -> Vec<String> {
    names(&["HSC-G", "HSC-R", "HSC-I"])
}

fn view() -> ViewParams {
    ViewParams::default()
}

fn all_stretches() -> [Stretch; 4] {
    [Stretch::Asinh, Stretch::Log, Stretch::Linear, Stretch::Sqrt]
}

fn centre(img: &image::RgbImage) -> [u8; 3] {
    img.get_pixel(img.width() / 2, img.height() / 2).0
}

// ---- band choice ----

#[test]
fn composite_bands_follow_lupton_and_survey_names() {
    assert_eq!(composite_bands(&names(&["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"])), [0, 1, 2]);
    assert_eq!(composite_bands(&names(&["g", "r", "z"])), [0, 1, 2]);
    assert_eq!(composite_bands(&names(&["DECam_z", "DECam_r", "DECam_g"])), [2, 1, 0]);
    // SDSS: u is skipped for g,r,i.
    assert_eq!(composite_bands(&names(&["u", "g", "r", "i", "z"])), [1, 2, 3]);
    assert_eq!(composite_bands(&names(&["u", "g", "r"])), [0, 1, 2]);
    // Newer HSC filters (I2) count as i; the first of duplicates wins.
    assert_eq!(composite_bands(&names(&["HSC-G", "HSC-R2", "HSC-I2", "HSC-I"])), [0, 1, 2]);
    assert_eq!(composite_bands(&names(&["B", "V", "R"])), [0, 1, 2]);
}

#[test]
fn composite_bands_of_an_rgb_file_are_taken_as_given() {
    assert_eq!(composite_bands(&names(&["r", "g", "b"])), [2, 1, 0]);
    assert_eq!(composite_bands(&names(&["Blue", "Green", "Red"])), [0, 1, 2]);
}

#[test]
fn composite_bands_for_few_or_unknown_bands() {
    assert_eq!(composite_bands(&[]), [0, 0, 0]);
    assert_eq!(composite_bands(&names(&["HSC-I"])), [0, 0, 0]);
    assert_eq!(composite_bands(&names(&["a", "b2x"])), [0, 0, 1]);
    assert_eq!(composite_bands(&names(&["r", "g"])), [1, 1, 0]);
    assert_eq!(composite_bands(&names(&["band0", "band1", "band2", "band3"])), [0, 1, 2]);
    // Two known filters are not enough to reorder three bands.
    assert_eq!(composite_bands(&names(&["r", "g", "W1"])), [0, 1, 2]);
}

// ---- colour composite ----

#[test]
fn red_galaxy_is_red_and_blue_galaxy_is_blue() {
    for stretch in all_stretches() {
        let v = ViewParams { stretch, ..view() };
        let red = render_cutout(&galaxy(32, &[10.0, 20.0, 40.0], 1.0, 1), 3, 32, 32, &gri(), &v);
        let [r, g, b] = centre(&red);
        assert!(r > g && g > b, "{stretch:?} red galaxy centre {:?}", [r, g, b]);
        let blue = render_cutout(&galaxy(32, &[40.0, 20.0, 10.0], 1.0, 1), 3, 32, 32, &gri(), &v);
        let [r, g, b] = centre(&blue);
        assert!(b > g && g > r, "{stretch:?} blue galaxy centre {:?}", [r, g, b]);
    }
}

#[test]
fn saturated_core_keeps_its_colour() {
    let pixels = galaxy(32, &[1e4, 2e4, 4e4], 1.0, 2);
    for stretch in all_stretches() {
        let v = ViewParams { stretch, alpha_scale: 4.0, ..view() };
        let [r, g, b] = centre(&render_cutout(&pixels, 3, 32, 32, &gri(), &v));
        assert_eq!(r, 255, "{stretch:?}");
        // Flux ratio 4:2:1 survives; per-channel clipping would give white.
        assert!((f32::from(g) / 255.0 - 0.5).abs() < 0.01, "{stretch:?} g {g}");
        assert!((f32::from(b) / 255.0 - 0.25).abs() < 0.01, "{stretch:?} b {b}");
    }
}

#[test]
fn one_band_composite_is_grey_and_two_bands_make_a_green_mean() {
    let one = render_cutout(&galaxy(16, &[30.0], 1.0, 3), 1, 16, 16, &names(&["r"]), &view());
    assert!(one.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    // Blue = first, red = second, green their mean: a red-only object is red
    // with half-strength green, and green always sits between the two.
    let two = render_cutout(&galaxy(16, &[0.0, 40.0], 0.0, 3), 2, 16, 16, &names(&["x", "y"]), &view());
    let [r, g, b] = centre(&two);
    assert_eq!(b, 0);
    assert!((i32::from(r) - 2 * i32::from(g)).abs() <= 1, "{:?}", [r, g, b]);
}

#[test]
fn empty_cutout_shows_dark_noise() {
    let pixels = normals(3 * 48 * 48, 4).iter().map(|v| v * 5.0).collect::<Vec<_>>();
    for stretch in all_stretches() {
        let img = render_cutout(&pixels, 3, 48, 48, &gri(), &ViewParams { stretch, ..view() });
        let mean = img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / img.as_raw().len() as f64;
        let max = *img.as_raw().iter().max().unwrap();
        assert!(mean < 40.0 && max > 20, "{stretch:?}: mean {mean}, max {max}");
    }
}

#[test]
fn bright_star_off_centre_does_not_dim_the_galaxy() {
    let s = 64;
    let alone = galaxy(s, &[20.0, 40.0, 60.0], 1.0, 5);
    let mut with_star = alone.clone();
    for b in 0..3 {
        for r in 8..17 {
            for c in 8..17 {
                let d2 = ((r as f32 - 12.0).powi(2) + (c as f32 - 12.0).powi(2)) / 2.0;
                with_star[(b * s + r) * s + c] += 1e6 * (-d2).exp();
            }
        }
    }
    let a = render_cutout(&alone, 3, s, s, &gri(), &view());
    let b = render_cutout(&with_star, 3, s, s, &gri(), &view());
    let (ca, cb) = (centre(&a), centre(&b));
    assert!(ca[0] > 150, "galaxy centre {ca:?}");
    for ch in 0..3 {
        assert!(ca[ch].abs_diff(cb[ch]) <= 2, "{ca:?} vs {cb:?}");
    }
    // The star saturates with its (white) colour.
    assert_eq!(b.get_pixel(12, 12).0, [255, 255, 255]);
}

// ---- masked pixels and bad input ----

#[test]
fn masked_pixels_are_grey_and_change_nothing_else() {
    let s = 32;
    let clean = galaxy(s, &[10.0, 20.0, 40.0], 1.0, 6);
    // Outside the border frame (2 px) and the central quarter, so every
    // statistic sees the same pixels: the rest must be identical.
    let holes = [(4, 5), (27, 20), (5, 28)];
    let mut dirty = clean.clone();
    for (r, c) in holes {
        for b in 0..3 {
            dirty[(b * s + r) * s + c] = f32::NAN;
        }
    }
    dirty[(s + 6) * s + 6] = f32::INFINITY; // band 1 only
    for v in [
        view(),
        ViewParams { band: Some(0), ..view() },
        ViewParams { band: Some(1), ..view() },
        ViewParams { stretch: Stretch::Sqrt, ..view() },
    ] {
        let a = render_cutout(&clean, 3, s, s, &gri(), &v);
        let b = render_cutout(&dirty, 3, s, s, &gri(), &v);
        for (x, y, p) in b.enumerate_pixels() {
            let (r, c) = (y as usize, x as usize);
            let masked = holes.contains(&(r, c)) || ((r, c) == (6, 6) && v.band != Some(0));
            if masked {
                assert_eq!(p.0, [MASKED_GREY; 3], "{v:?} at {r},{c}");
            } else {
                assert_eq!(p, a.get_pixel(x, y), "{v:?} at {r},{c}");
            }
        }
    }
}

#[test]
fn masked_core_leaves_the_rest_nearly_unchanged() {
    let s = 32;
    let clean = galaxy(s, &[10.0, 20.0, 40.0], 1.0, 7);
    let mut dirty = clean.clone();
    for b in 0..3 {
        dirty[(b * s + 16) * s + 16] = f32::NAN;
        dirty[(b * s + 15) * s + 16] = f32::NEG_INFINITY;
    }
    let a = render_cutout(&clean, 3, s, s, &gri(), &view());
    let b = render_cutout(&dirty, 3, s, s, &gri(), &view());
    assert_eq!(b.get_pixel(16, 16).0, [MASKED_GREY; 3]);
    assert_eq!(b.get_pixel(16, 15).0, [MASKED_GREY; 3]);
    let worst =
        a.as_raw().iter().zip(b.as_raw()).enumerate().filter(|(i, _)| ![16 * s + 16, 15 * s + 16].contains(&(i / 3)));
    assert!(worst.map(|(_, (x, y))| x.abs_diff(*y)).max().unwrap() <= 3);
}

#[test]
fn all_nan_cutout_is_uniform_neutral() {
    let pixels = vec![f32::NAN; 5 * 20 * 24];
    let five = names(&["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"]);
    for v in [view(), ViewParams { band: Some(3), ..view() }, ViewParams { zoom: 2, ..view() }] {
        let img = render_cutout(&pixels, 5, 20, 24, &five, &v);
        let z = u32::from(v.zoom);
        assert_eq!(img.dimensions(), (24 / z, 20 / z));
        assert!(img.pixels().all(|p| p.0 == [MASKED_GREY; 3]));
    }
}

#[test]
fn empty_or_inconsistent_input_is_a_small_neutral_image() {
    let small = (EMPTY_SIDE, EMPTY_SIDE);
    for (px, n, h, w) in [(vec![], 0, 0, 0), (vec![], 3, 0, 10), (vec![1.0; 10], 3, 2, 2), (vec![1.0; 12], 0, 2, 2)] {
        let img = render_cutout(&px, n, h, w, &gri(), &view());
        assert_eq!(img.dimensions(), small);
        assert!(img.pixels().all(|p| p.0 == [MASKED_GREY; 3]));
    }
    // Overflowing sizes are inconsistent, not a panic.
    assert_eq!(render_cutout(&[1.0], usize::MAX, 2, 2, &[], &view()).dimensions(), small);
}

#[test]
fn odd_parameters_do_not_panic() {
    let pixels = galaxy(9, &[5.0, 5.0, 5.0], 1.0, 8);
    for (q, alpha) in [(0.0, 0.0), (f32::NAN, f32::NAN), (1e9, f32::INFINITY), (-3.0, -1.0)] {
        for stretch in all_stretches() {
            let v = ViewParams { stretch, q, alpha_scale: alpha, band: Some(7), zoom: 200 };
            assert_eq!(render_cutout(&pixels, 3, 9, 9, &gri(), &v).dimensions(), (1, 1));
        }
    }
    // Names that do not match the band count are ignored.
    assert_eq!(render_cutout(&pixels, 3, 9, 9, &names(&["r"]), &view()).dimensions(), (9, 9));
    // Huge but finite values.
    let huge = vec![3e38f32; 3 * 4 * 4];
    render_cutout(&huge, 3, 4, 4, &gri(), &view());
}

// ---- single band, zoom, view parameters ----

#[test]
fn single_band_is_grey_and_monotonic_in_flux() {
    let s = 24;
    let pixels = galaxy(s, &[300.0, 0.0, 0.0], 1.0, 9);
    for stretch in all_stretches() {
        let img = render_cutout(&pixels, 3, s, s, &gri(), &ViewParams { stretch, band: Some(0), ..view() });
        assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        let mut pairs: Vec<(f32, u8)> = pixels[..s * s].iter().zip(img.pixels()).map(|(&f, p)| (f, p[0])).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(pairs.windows(2).all(|w| w[0].1 <= w[1].1), "{stretch:?} not monotonic");
        let (sky, core) = (pairs[s * s / 4].1, pairs[s * s - 1].1);
        assert!(sky < 80 && core > 200, "{stretch:?}: sky {sky}, core {core}");
        // Asinh shows the noise dark but not black (black sits at sky − 1σ).
        if stretch == Stretch::Asinh {
            assert!(sky > 5, "sky {sky}");
        }
    }
}

#[test]
fn zoom_shows_the_centre_at_the_same_brightness() {
    let (h, w) = (32, 40);
    let mut pixels = galaxy(40, &[10.0, 20.0, 40.0], 1.0, 10);
    // Make it 32 × 40 by dropping 8 rows per band.
    pixels = pixels.chunks(40 * 40).flat_map(|band| band[4 * 40..36 * 40].to_vec()).collect();
    let full = render_cutout(&pixels, 3, h, w, &gri(), &view());
    assert_eq!(full.dimensions(), (40, 32));
    assert_eq!(render_cutout(&pixels, 3, h, w, &gri(), &ViewParams { zoom: 0, ..view() }), full);
    for zoom in [2u8, 4] {
        let z = usize::from(zoom);
        let img = render_cutout(&pixels, 3, h, w, &gri(), &ViewParams { zoom, ..view() });
        assert_eq!(img.dimensions(), ((w / z) as u32, (h / z) as u32));
        let (r0, c0) = ((h - h / z) / 2, (w - w / z) / 2);
        for (x, y, p) in img.enumerate_pixels() {
            assert_eq!(p, full.get_pixel(x + c0 as u32, y + r0 as u32));
        }
    }
}

#[test]
fn alpha_brightens_and_q_compresses() {
    let pixels = galaxy(32, &[10.0, 20.0, 40.0], 1.0, 11);
    let total = |v: ViewParams| {
        render_cutout(&pixels, 3, 32, 32, &gri(), &v).as_raw().iter().map(|&b| u64::from(b)).sum::<u64>()
    };
    assert!(total(ViewParams { alpha_scale: 2.0, ..view() }) > total(view()));
    assert!(total(ViewParams { alpha_scale: 0.5, ..view() }) < total(view()));
    assert_ne!(total(ViewParams { q: 2.0, ..view() }), total(view()));
}

#[test]
fn stretch_cycles_through_all_four() {
    let mut s = Stretch::default();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(s.name());
        s = s.next();
    }
    assert_eq!(s, Stretch::Asinh);
    assert_eq!(seen, ["asinh", "log", "linear", "sqrt"]);
}

#[test]
fn view_params_round_trip_and_default_missing_fields() {
    let v = ViewParams { stretch: Stretch::Sqrt, q: 3.0, alpha_scale: 2.0, band: Some(1), zoom: 4 };
    let json = serde_json::to_string(&v).unwrap();
    assert_eq!(serde_json::from_str::<ViewParams>(&json).unwrap(), v);
    let partial: ViewParams = serde_json::from_str(r#"{"stretch":"log"}"#).unwrap();
    assert_eq!(partial, ViewParams { stretch: Stretch::Log, ..view() });
}

#[test]
fn tiny_render_snapshot() {
    let pixels = galaxy(8, &[10.0, 20.0, 40.0], 0.5, 12);
    let img = render_cutout(&pixels, 3, 8, 8, &gri(), &view());
    let hex: Vec<String> =
        img.as_raw().chunks(8 * 3).map(|row| row.iter().map(|b| format!("{b:02x}")).collect()).collect();
    insta::assert_snapshot!(hex.join("\n"));
}

/// `cargo test --release --lib render -- --ignored --nocapture`
#[test]
#[ignore]
fn timing_64x64x5() {
    let pixels = galaxy(64, &[10.0, 20.0, 40.0, 50.0, 55.0], 1.0, 13);
    let five = names(&["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"]);
    for v in [view(), ViewParams { band: Some(2), ..view() }, ViewParams { stretch: Stretch::Log, ..view() }] {
        // Best of several batches: the machine is shared with builds.
        let reps = 500;
        let per = (0..7)
            .map(|_| {
                let start = std::time::Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(render_cutout(std::hint::black_box(&pixels), 5, 64, 64, &five, &v));
                }
                start.elapsed().as_secs_f64() / f64::from(reps) * 1e6
            })
            .fold(f64::INFINITY, f64::min);
        println!("render 64x64x5 {:?} band {:?}: {per:.1} µs", v.stretch, v.band);
    }
}
