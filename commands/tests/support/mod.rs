//! Helpers the command tests share.

use berth_commands::{Command, CreateContainer};

/// A plain create: no mounts, limits or terminal.
pub fn create_container(id: &str, image: &str, env: Vec<String>) -> Command {
    Command::CreateContainer(CreateContainer {
        id: id.into(),
        image: image.into(),
        args: vec![],
        entrypoint: vec![],
        env,
        working_dir: String::new(),
        user: String::new(),
        hostname: String::new(),
        labels: Default::default(),
        open_stdin: false,
        tty: false,
        policies: Default::default(),
        host: Default::default(),
        mounts: vec![],
        image_volumes: vec![],
        read_only_rootfs: false,
        auto_remove: false,
        sealer: None,
        network: Default::default(),
        start_task: false,
    })
}
