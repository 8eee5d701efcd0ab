//! Which bands make a colour composite.

/// Which three bands make the composite, as indices `[blue, green, red]`.
///
/// * Bands literally named r, g, b (or red, green, blue; any case) are an
///   RGB image: red = r, green = g, blue = b.
/// * Otherwise, names are read as filters (survey prefixes and suffixes are
///   ignored: "HSC-G", "DECam_g", "g_band", "HSC-I2" all work): u g r i z y,
///   Johnson B V, near-infrared J H K. With three or more known filters the
///   composite is the three bluest by wavelength, skipping u when more than
///   three remain (Lupton 2004: g,r,i → b,g,r for HSC/SDSS; g,r,z for DECaLS).
/// * Otherwise the first three bands in file order (first → blue).
/// * One band: `[0, 0, 0]` (grey).
/// * Two bands: `[bluer, bluer, redder]` (file order unless both are known
///   filters): green has no band of its own, and [`render_cutout`] draws it
///   as the mean of blue and red.
/// * No bands: `[0, 0, 0]`.
///
/// [`render_cutout`]: super::render_cutout
pub fn composite_bands(band_names: &[String]) -> [usize; 3] {
    let n = band_names.len();
    if n <= 1 {
        return [0, 0, 0];
    }
    if let Some(rgb) = literal_rgb(band_names) {
        return rgb;
    }
    // Known filters, bluest first; the first of duplicates (HSC-I, HSC-I2) wins.
    let mut known: Vec<(f32, usize)> = Vec::with_capacity(n);
    for (i, name) in band_names.iter().enumerate() {
        match band_wavelength(name) {
            Some(nm) if !known.iter().any(|&(k, _)| k == nm) => known.push((nm, i)),
            _ => {}
        }
    }
    known.sort_by(|a, b| a.0.total_cmp(&b.0));
    if n == 2 {
        let [lo, hi] = if known.len() == 2 { [known[0].1, known[1].1] } else { [0, 1] };
        return [lo, lo, hi];
    }
    if known.len() >= 3 {
        // u is faint and noisy in most surveys: g,r,i make the classic composite.
        let skip = usize::from(known.len() > 3 && known[0].0 < U_LIMIT_NM);
        return [known[skip].1, known[skip + 1].1, known[skip + 2].1];
    }
    [0, 1, 2]
}

/// Filters bluer than this are u-like.
const U_LIMIT_NM: f32 = 400.0;

/// `[blue, green, red]` when the names are literally r, g and b.
fn literal_rgb(names: &[String]) -> Option<[usize; 3]> {
    let find = |short: &str, long: &str| {
        names.iter().position(|s| {
            let s = s.trim();
            s.eq_ignore_ascii_case(short) || s.eq_ignore_ascii_case(long)
        })
    };
    Some([find("b", "blue")?, find("g", "green")?, find("r", "red")?])
}

/// Effective wavelength (nm) of a filter recognised from its name: each
/// alphanumeric token is tried from the end, so a survey prefix is skipped.
fn band_wavelength(name: &str) -> Option<f32> {
    name.split(|c: char| !c.is_ascii_alphanumeric()).rev().find_map(token_wavelength)
}

fn token_wavelength(token: &str) -> Option<f32> {
    // Trailing digits name filter versions (HSC-I2, HSC-R2), not other bands.
    let t = token.trim_end_matches(|c: char| c.is_ascii_digit()).to_ascii_lowercase();
    Some(match t.as_str() {
        "u" => 355.0,
        "b" => 445.0,
        "g" => 475.0,
        "v" => 551.0,
        "r" => 620.0,
        "i" => 765.0,
        "z" => 900.0,
        "y" => 1000.0,
        "j" => 1250.0,
        "h" => 1650.0,
        "k" | "ks" => 2150.0,
        _ => return None,
    })
}
