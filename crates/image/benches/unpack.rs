//! Import + unpack time of the busybox test image, and of a second import (already stored).
//! `cargo bench -p rkube-image --bench unpack`

use std::time::Instant;

use rkube_image::{ImageStore, testing};

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let archive = tmp.path().join("busybox.tar");
    testing::busybox_oci_archive(&archive, "busybox:bench")?;
    let size = std::fs::metadata(&archive)?.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut first = Vec::new();
        let mut second = Vec::new();
        for i in 0..5 {
            let store = ImageStore::open(tmp.path().join(format!("store{i}")))?;
            let t = Instant::now();
            store.import(&archive, &|_| {}).await?;
            first.push(t.elapsed());
            let t = Instant::now();
            store.import(&archive, &|_| {}).await?;
            second.push(t.elapsed());
        }
        first.sort();
        second.sort();
        println!(
            "archive: {} KiB (busybox OCI layout, gzip layer)",
            size / 1024
        );
        println!(
            "import + unpack (empty store): median {:?}, min {:?}",
            first[2], first[0]
        );
        println!(
            "import again (already stored): median {:?}, min {:?}",
            second[2], second[0]
        );
        anyhow::Ok(())
    })
}
