//! `status`: what is linked into ROOT, read from the state directory.

use std::path::Path;

use crate::journal::{self, Record};
use crate::report::{ExtensionState, Mode, Status};
use crate::run::count_present;
use crate::state::{identity, lossy, open_env};
use crate::{Error, REFUSED_FILE, ioe, valid_name};

/// What is linked into ROOT.
pub fn status(root: &Path, state: Option<&Path>) -> Result<Status, Error> {
    let env = match open_env(root, state, false) {
        Ok(e) => e,
        Err(Error::NoState(st)) => {
            let rp = std::fs::canonicalize(root).map_err(ioe(root))?;
            return Ok(Status {
                root: rp.display().to_string(),
                state: st.display().to_string(),
                extensions: Vec::new(),
                refused: Vec::new(),
            });
        }
        Err(e) => return Err(e),
    };
    let mut extensions = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&env.state)
        .map_err(ioe(&env.state))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    for n in names {
        let sdir = env.state.join(&n);
        if let Some(mut s) = std::fs::read(sdir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<ExtensionState>(&b).ok())
        {
            // A signer is only reported for the bytes that were checked.
            let now = std::fs::symlink_metadata(&s.source)
                .map(|m| identity(&m))
                .unwrap_or_default();
            if now != s.identity {
                s.changed_since_link = true;
                s.signer = None;
            }
            extensions.push(s);
            continue;
        }
        let recs = journal::read(&sdir.join("journal"), &env.content(&n)).unwrap_or_default();
        let (files, dirs) = count_present(&env.root, &recs);
        let source = recs
            .iter()
            .find_map(|r| {
                if let Record::Source { path, .. } = r {
                    Some(lossy(path))
                } else {
                    None
                }
            })
            .unwrap_or_default();
        let mode = recs
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Mode(m) if m == "bind" => Some(Mode::Bind),
                Record::Mode(m) if m == "extract" => Some(Mode::Extract),
                Record::Mode(_) => Some(Mode::Mount),
                _ => None,
            })
            .unwrap_or(Mode::Mount);
        let content = env.content(&n);
        extensions.push(ExtensionState {
            name: n,
            source,
            version: None,
            signer: None,
            mode,
            content: lossy(&content),
            files,
            dirs,
            conflicts: Vec::new(),
            run: None,
            complete: false,
            identity: String::new(),
            changed_since_link: false,
            verified: None,
            triggers: Vec::new(),
        });
    }
    let refused = std::fs::read(env.state.join(REFUSED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Ok(Status {
        root: env.root_path.display().to_string(),
        state: env.state.display().to_string(),
        extensions,
        refused,
    })
}
