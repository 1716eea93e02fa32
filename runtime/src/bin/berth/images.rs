//! `berth image import`, `export`, `tag`, `inspect`, `ls`, `rm` and `prune`: streaming an
//! archive to berthd in pieces and back, the image table (SIZE: the compressed layers; CONTENT:
//! every blob of the image, manifest and config included, as `Image.size` holds), and what a
//! prune removed.

use std::path::Path;
use std::process::ExitCode;

use berth_projections::names::short_digest;
use berth_runtime::api;
use tokio::io::AsyncReadExt;

use crate::args::{
    ImageExportArgs, ImageImportArgs, ImageInspectArgs, ImagePruneArgs, ImageRmArgs, ImageTagArgs, OutputFormat,
};
use crate::output::{for_each_target, format_rfc3339, format_table, human_size, print_json_document, print_stdout};
use crate::session::{CliError, Session};

/// Size of the pieces an image archive is streamed in.
const IMPORT_CHUNK_BYTES: usize = 1024 * 1024;

/// An image import whose archive is already open. `main` opens it before connecting: a typo in
/// the path is the likelier mistake, and it should not wait on (or hide behind) the daemon.
pub struct ImportJob {
    import_args: ImageImportArgs,
    archive: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
}

impl ImportJob {
    pub async fn open(import_args: ImageImportArgs) -> Result<ImportJob, CliError> {
        let archive_path = &import_args.archive_path;
        let archive: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if archive_path == Path::new("-") {
            Box::new(tokio::io::stdin())
        } else {
            let file = tokio::fs::File::open(archive_path)
                .await
                .map_err(|source| CliError::ReadFile { path: archive_path.clone(), source })?;
            Box::new(file)
        };
        Ok(ImportJob { import_args, archive })
    }
}

pub async fn import_image(session: &Session, import_job: ImportJob) -> Result<ExitCode, CliError> {
    let ImportJob { import_args, archive } = import_job;
    let archive_path = import_args.archive_path.clone();
    let (chunk_sender, chunk_receiver) = tokio::sync::mpsc::channel::<api::ImportChunk>(2);
    let first_chunk = api::ImportChunk {
        name: import_args.name.clone().unwrap_or_default(),
        platform: import_args.platform.clone().unwrap_or_default(),
        // berthd names the archive in its errors by the path the user typed.
        source_label: match archive_path.as_os_str() == "-" {
            true => "standard input".to_string(),
            false => archive_path.display().to_string(),
        },
        data: Vec::new(),
    };
    let reader = tokio::spawn(stream_archive(archive, first_chunk, chunk_sender));
    let import_result =
        session.images().import(session.request(tokio_stream::wrappers::ReceiverStream::new(chunk_receiver))).await;
    // A read error explains a truncated upload better than the daemon's complaint about it.
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(source)) => return Err(CliError::ReadFile { path: archive_path, source }),
        Err(join_error) => {
            return Err(CliError::ReadFile {
                path: archive_path,
                source: std::io::Error::other(join_error.to_string()),
            })
        }
    }
    let imported = import_result.map_err(session.rpc_error())?.into_inner();
    print_images(&imported.images, import_args.output.output)?;
    Ok(ExitCode::SUCCESS)
}

/// Sends the archive in `IMPORT_CHUNK_BYTES` pieces; the first carries the options
/// (`first_chunk`'s), and at least one message is always sent so the daemon sees them even for
/// an empty archive.
async fn stream_archive(
    mut archive: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    first_chunk: api::ImportChunk,
    chunk_sender: tokio::sync::mpsc::Sender<api::ImportChunk>,
) -> std::io::Result<()> {
    let mut options_for_first_chunk = Some(first_chunk);
    loop {
        let mut buffer = vec![0_u8; IMPORT_CHUNK_BYTES];
        let n_read = fill_buffer(&mut archive, &mut buffer).await?;
        buffer.truncate(n_read);
        let is_first = options_for_first_chunk.is_some();
        if n_read == 0 && !is_first {
            return Ok(());
        }
        let chunk = api::ImportChunk { data: buffer, ..options_for_first_chunk.take().unwrap_or_default() };
        if chunk_sender.send(chunk).await.is_err() {
            // The call ended (the daemon answered or failed); its result tells the story.
            return Ok(());
        }
        if n_read < IMPORT_CHUNK_BYTES {
            return Ok(());
        }
    }
}

/// Reads until `buffer` is full or the input ends; returns how many bytes were read.
async fn fill_buffer(reader: &mut (impl tokio::io::AsyncRead + Unpin), buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut n_filled = 0;
    while n_filled < buffer.len() {
        let n_read = reader.read(&mut buffer[n_filled..]).await?;
        if n_read == 0 {
            break;
        }
        n_filled += n_read;
    }
    Ok(n_filled)
}

/// Writes the export to FILE (through `FILE.partial`, renamed at the end, so a failed export
/// leaves no archive that looks whole) or to standard output for `-`.
pub async fn export_images(session: &Session, export_args: ImageExportArgs) -> Result<ExitCode, CliError> {
    use tokio::io::AsyncWriteExt;
    let (names, file) = export_args.split();
    let request = api::ExportImagesRequest { names: names.to_vec() };
    let mut chunks = session.images().export(session.request(request)).await.map_err(session.rpc_error())?.into_inner();
    let to_stdout = file == "-";
    let final_path = std::path::PathBuf::from(file);
    let partial_path = std::path::PathBuf::from(format!("{file}.partial"));
    let write_error = |source| CliError::WriteFile { path: final_path.clone(), source };
    let mut output: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match to_stdout {
        true => Box::new(tokio::io::stdout()),
        false => Box::new(tokio::fs::File::create(&partial_path).await.map_err(write_error)?),
    };
    let result = async {
        while let Some(chunk) = chunks.message().await.map_err(session.rpc_error())? {
            output.write_all(&chunk.data).await.map_err(write_error)?;
        }
        output.flush().await.map_err(write_error)?;
        if !to_stdout {
            tokio::fs::rename(&partial_path, &final_path).await.map_err(write_error)?;
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    if result.is_err() && !to_stdout {
        let _ = tokio::fs::remove_file(&partial_path).await;
    }
    result
}

pub async fn tag_image(session: &Session, tag_args: ImageTagArgs) -> Result<ExitCode, CliError> {
    let request = api::TagImageRequest { source: tag_args.source, target: tag_args.target };
    session.images().tag(session.request(request)).await.map_err(session.rpc_error())?;
    Ok(ExitCode::SUCCESS)
}

/// The image as JSON: berth's record, the manifest and config as stored, each layer with its
/// size and digests, and the history from the config.
pub async fn inspect_image(session: &Session, inspect_args: ImageInspectArgs) -> Result<ExitCode, CliError> {
    let request = api::InspectImageRequest { name: inspect_args.name };
    let inspected = session.images().inspect(session.request(request)).await.map_err(session.rpc_error())?.into_inner();
    let image = inspected.image.unwrap_or_default();
    let parse = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or(serde_json::Value::Null);
    let config = parse(&inspected.config);
    let document = serde_json::json!({
        "name": image.name,
        "digest": image.digest,
        "media_type": image.media_type,
        "config_digest": image.config_digest,
        "size": image_layers_size(&image),
        "layers": image.layers.iter().map(|layer| serde_json::json!({
            "digest": layer.digest,
            "diff_id": layer.diff_id,
            "chain_id": layer.chain_id,
            "media_type": layer.media_type,
            "size": layer.size,
        })).collect::<Vec<_>>(),
        "created_at": format_rfc3339(image.created_at_ns),
        "created_seq": image.created_seq,
        "history": config.get("history").cloned().unwrap_or(serde_json::Value::Array(Vec::new())),
        "manifest": parse(&inspected.manifest),
        "config": config,
    });
    print_json_document(&document)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn list_images(session: &Session, output: OutputFormat) -> Result<ExitCode, CliError> {
    let mut images = session.list_all_images().await.map_err(session.rpc_error())?;
    images.sort_by(|left, right| left.name.cmp(&right.name));
    print_images(&images, output)?;
    Ok(ExitCode::SUCCESS)
}

/// The size people care about: the sum of the (compressed) layers, not the manifest's size.
fn image_layers_size(image: &api::Image) -> i64 {
    image.layers.iter().map(|layer| layer.size).sum()
}

fn print_images(images: &[api::Image], output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => {
            let json_images: Vec<serde_json::Value> = images
                .iter()
                .map(|image| {
                    serde_json::json!({
                        "name": image.name,
                        "digest": image.digest,
                        "media_type": image.media_type,
                        "size": image_layers_size(image),
                        "content_size": image.size,
                        "manifest_size": image.manifest_size,
                        "config_digest": image.config_digest,
                        "layers": image.layers.iter().map(|layer| serde_json::json!({
                            "digest": layer.digest,
                            "diff_id": layer.diff_id,
                            "media_type": layer.media_type,
                            "size": layer.size,
                        })).collect::<Vec<_>>(),
                        "entrypoint": image.entrypoint,
                        "cmd": image.cmd,
                        "created_at": format_rfc3339(image.created_at_ns),
                        "created_seq": image.created_seq,
                    })
                })
                .collect();
            print_json_document(&serde_json::Value::Array(json_images))
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|image| {
                    vec![
                        image.name.clone(),
                        short_digest(&image.digest).to_string(),
                        human_size(image_layers_size(image)),
                        human_size(image.size),
                    ]
                })
                .collect();
            print_stdout(&format_table(&["NAME", "DIGEST", "SIZE", "CONTENT"], &rows))
        }
    }
}

pub async fn remove_images(session: &Session, image_rm_args: ImageRmArgs) -> Result<ExitCode, CliError> {
    for_each_target(&image_rm_args.image_names, async |image_name| {
        session
            .images()
            .remove(session.request(api::RemoveImageRequest { name: image_name.to_string() }))
            .await
            .map(drop)
            .map_err(session.rpc_error())
    })
    .await
}

/// `image prune [-a]`: what was removed, one line each (or JSON), and what it freed.
pub async fn prune_images(session: &Session, prune_args: ImagePruneArgs) -> Result<ExitCode, CliError> {
    let request = api::PruneImagesRequest { all_unused: prune_args.all_unused };
    let pruned = session.images().prune(session.request(request)).await.map_err(session.rpc_error())?.into_inner();
    print_stdout(&format_pruned(&pruned, prune_args.output.output))?;
    Ok(ExitCode::SUCCESS)
}

fn format_pruned(pruned: &api::PruneImagesResponse, output: OutputFormat) -> String {
    match output {
        OutputFormat::Json => {
            let document = serde_json::json!({
                "seq": pruned.seq,
                "images_removed": pruned.images_removed,
                "blobs_removed": pruned.blobs_removed,
                "snapshots_removed": pruned.snapshots_removed,
                "blob_bytes_removed": pruned.blob_bytes_removed,
            });
            format!("{}\n", serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string()))
        }
        OutputFormat::Table => {
            let mut text = String::new();
            for name in &pruned.images_removed {
                text.push_str(&format!("removed image {name}\n"));
            }
            for digest in &pruned.blobs_removed {
                text.push_str(&format!("removed blob {digest}\n"));
            }
            for chain_id in &pruned.snapshots_removed {
                text.push_str(&format!("removed layer snapshot {chain_id}\n"));
            }
            text.push_str(&format!(
                "{} images, {} blobs ({}), {} layer snapshots removed\n",
                pruned.images_removed.len(),
                pruned.blobs_removed.len(),
                human_size(pruned.blob_bytes_removed),
                pruned.snapshots_removed.len()
            ));
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn archives_stream_in_mebibyte_chunks_with_the_name_first() {
        let archive_bytes = vec![7_u8; IMPORT_CHUNK_BYTES * 2 + 10];
        let (chunk_sender, mut chunk_receiver) = tokio::sync::mpsc::channel(8);
        let archive: Box<dyn tokio::io::AsyncRead + Unpin + Send> = Box::new(std::io::Cursor::new(archive_bytes));
        let options = api::ImportChunk { name: "alpine:3".to_string(), ..Default::default() };
        stream_archive(archive, options, chunk_sender).await.unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = chunk_receiver.recv().await {
            chunks.push(chunk);
        }
        let sizes: Vec<usize> = chunks.iter().map(|chunk| chunk.data.len()).collect();
        assert_eq!(sizes, [IMPORT_CHUNK_BYTES, IMPORT_CHUNK_BYTES, 10]);
        assert_eq!(chunks[0].name, "alpine:3");
        assert!(chunks[1..].iter().all(|chunk| chunk.name.is_empty()));

        let (chunk_sender, mut chunk_receiver) = tokio::sync::mpsc::channel(8);
        let empty: Box<dyn tokio::io::AsyncRead + Unpin + Send> = Box::new(std::io::Cursor::new(Vec::new()));
        let options = api::ImportChunk { name: "x".to_string(), ..Default::default() };
        stream_archive(empty, options, chunk_sender).await.unwrap();
        let only_chunk = chunk_receiver.recv().await.unwrap();
        assert_eq!((only_chunk.name.as_str(), only_chunk.data.len()), ("x", 0));
        assert!(chunk_receiver.recv().await.is_none());
    }

    #[test]
    fn image_table_shows_the_short_digest_and_the_layers_size() {
        let image = api::Image {
            name: "alpine:3".to_string(),
            digest: "sha256:0123456789abcdef0123".to_string(),
            layers: vec![
                api::Layer { size: 1_000_000, ..Default::default() },
                api::Layer { size: 500_000, ..Default::default() },
            ],
            ..Default::default()
        };
        assert_eq!(short_digest(&image.digest), "0123456789ab");
        assert_eq!(human_size(image_layers_size(&image)), "1.5 MB");
    }
}
