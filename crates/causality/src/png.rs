//! PNG output: the SVG diagram rasterized by resvg (pure Rust).

use anyhow::{anyhow, Context, Result};
use resvg::{tiny_skia, usvg};
use std::path::Path;

/// Renders `svg` and writes it as a PNG at `path`. Text needs a system
/// font; with none installed the shapes still render, the labels do not.
pub fn write(svg: &str, path: &Path) -> Result<()> {
    let mut opt = usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = usvg::Tree::from_str(svg, &opt).context("parsing the diagram's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow!("diagram has an empty size"))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .save_png(path)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_a_png() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><circle cx="10" cy="10" r="5" fill="#1f77b4"/><text x="20" y="15" font-size="10">A1</text></svg>"##;
        let path = std::env::temp_dir().join(format!("concord-clocks-{}.png", std::process::id()));
        super::write(svg, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}
