//! `rkube image …`: the image store from the command line, working directly on
//! `<data-dir>/agent/image-store` (safe while the agent runs: the store locks itself).

use std::io::Write;
use std::path::{Path, PathBuf};

use rkube_cri::{ImageService, PullProgress};

use crate::store::ImageStore;

/// `rkube image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import image tarballs (`docker save` or OCI layout, optionally gzip/zstd compressed).
    Import {
        /// Tarballs to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Import every tarball of an air-gap directory not imported before (the agent runs
    /// this at start, in a child process so the import's buffers never stay in its heap).
    #[command(hide = true)]
    ImportDir {
        /// The directory (`<data-dir>/agent/images`).
        dir: PathBuf,
    },
    /// List stored images (as `crictl images`).
    Ls,
    /// Remove images (by reference or id) and the layers no other image uses.
    Rm {
        /// Image references or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Pull an image, with the mirrors and credentials of `<data-dir>/registries.yaml`.
    Pull {
        /// Image reference (`busybox`, `127.0.0.1:5000/x:1`).
        image: String,
    },
}

fn print_progress(p: PullProgress) {
    match p {
        PullProgress::Resolved {
            layers,
            total_bytes,
        } => eprintln!("resolved: {layers} layer(s), {}", human_size(total_bytes)),
        PullProgress::Layer {
            digest,
            bytes,
            cached,
        } => eprintln!(
            "{} {digest} ({})",
            if cached { "exists " } else { "done   " },
            human_size(bytes)
        ),
    }
}

fn print_imported(images: &[rkube_cri::Image]) {
    for img in images {
        let names = if img.repo_tags.is_empty() {
            "<none>".to_string()
        } else {
            img.repo_tags.join(", ")
        };
        eprintln!("imported {names} ({})", img.id);
    }
}

/// Runs one subcommand against `<data-dir>/agent/image-store`.
pub async fn run(cmd: ImageCommand, data_dir: &Path) -> anyhow::Result<()> {
    let store = ImageStore::open_data_dir(data_dir)?;
    match cmd {
        ImageCommand::Import { files } => {
            for f in files {
                eprintln!("importing {}", f.display());
                print_imported(&store.import(&f, &print_progress).await?);
            }
        }
        ImageCommand::ImportDir { dir } => {
            print_imported(&store.import_dir(&dir, &print_progress).await?);
        }
        ImageCommand::Ls => {
            let images = store.list_images().await?;
            let mut out = std::io::stdout().lock();
            out.write_all(render_table(&images).as_bytes())?;
        }
        ImageCommand::Rm { images } => {
            let mut missing = Vec::new();
            for i in images {
                match store.image_status(&i).await? {
                    Some(img) => {
                        store.remove_image(&img.id).await?;
                        println!("Deleted: {}", img.repo_tags.first().unwrap_or(&img.id));
                    }
                    None => missing.push(i),
                }
            }
            if !missing.is_empty() {
                anyhow::bail!("no such image: {}", missing.join(", "));
            }
        }
        ImageCommand::Pull { image } => {
            eprintln!("pulling {image}");
            let id = store.pull_image(&image, &[], &print_progress).await?;
            println!("Image is up to date for {id}");
        }
    }
    Ok(())
}

/// The `crictl images` table: one row per tag (or per digest name for untagged images).
pub(crate) fn render_table(images: &[rkube_cri::Image]) -> String {
    let mut tw = tabwriter::TabWriter::new(Vec::new())
        .minwidth(20)
        .padding(3);
    let _ = writeln!(tw, "IMAGE\tTAG\tIMAGE ID\tSIZE");
    let mut rows = Vec::new();
    for img in images {
        let id = img.id.trim_start_matches("sha256:");
        let short = &id[..id.len().min(13)];
        let size = human_size(img.size);
        if img.repo_tags.is_empty() {
            let repo = img
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map_or("<none>", |(n, _)| n);
            rows.push((
                repo.to_string(),
                "<none>".to_string(),
                short.to_string(),
                size,
            ));
            continue;
        }
        for t in &img.repo_tags {
            let slash = t.rfind('/').map_or(0, |i| i + 1);
            let (repo, tag) = match t[slash..].rfind(':') {
                Some(i) => (&t[..slash + i], &t[slash + i + 1..]),
                None => (t.as_str(), "<none>"),
            };
            rows.push((
                repo.to_string(),
                tag.to_string(),
                short.to_string(),
                size.clone(),
            ));
        }
    }
    rows.sort();
    for (repo, tag, id, size) in rows {
        let _ = writeln!(tw, "{repo}\t{tag}\t{id}\t{size}");
    }
    let _ = tw.flush();
    String::from_utf8(tw.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Decimal size with three significant digits, as Docker's `units.HumanSize` (`1.46MB`).
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    let int_digits = if size < 1.0 {
        1
    } else {
        size.log10().floor() as usize + 1
    };
    let decimals = 3usize.saturating_sub(int_digits);
    let mut s = format!("{size:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_table() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_459_000), "1.46MB");
        assert_eq!(human_size(774_000), "774kB");
        assert_eq!(human_size(12_500_000), "12.5MB");
        let images = vec![rkube_cri::Image {
            id: format!("sha256:{}", "ab".repeat(32)),
            repo_tags: vec![
                "docker.io/library/busybox:1.0".into(),
                "127.0.0.1:5000/x:2".into(),
            ],
            repo_digests: vec![],
            size: 1_459_000,
        }];
        let t = render_table(&images);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("IMAGE "), "{t}");
        assert!(
            lines[0].contains("TAG") && lines[0].contains("IMAGE ID") && lines[0].contains("SIZE")
        );
        assert!(lines[1].starts_with("127.0.0.1:5000/x "), "{t}");
        assert!(lines[2].contains("docker.io/library/busybox") && lines[2].contains("1.0"));
        assert!(
            lines[2].contains("ababababababa ") && lines[2].ends_with("1.46MB"),
            "{t}"
        );
    }
}
