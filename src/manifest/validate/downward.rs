//! `downwardAPI` volume files, checked as the API server's `validateDownwardAPIVolumeFile`
//! does (with its messages).

use super::env::validate_resource_field_ref;
use super::{unsupported, Errors};
use crate::manifest::downward::{volume_field_path_ok, DownwardVolume, VOLUME_FIELD_PATHS};
use crate::manifest::pod::{Pod, Volume};

const MODE: &str = "must be a number between 0 and 0777 (octal), both inclusive";

pub(super) fn validate(pod: &Pod, v: &Volume, path: &str, e: &mut Errors) {
    let Some(volume) = DownwardVolume::of(v, path) else {
        return;
    };
    let volume = match volume {
        Ok(d) => d,
        Err(message) => {
            e.add(path, format!("Invalid value: {message}"));
            return;
        }
    };
    if !(0..=0o777).contains(&volume.default_mode) {
        let key = if v.other.contains_key("projected") {
            "projected"
        } else {
            "downwardAPI"
        };
        e.add(
            format!("{path}.{key}.defaultMode"),
            format!("Invalid value: {}: {MODE}", volume.default_mode),
        );
    }
    for (at, f) in &volume.files {
        if f.path.is_empty() {
            e.add(format!("{at}.path"), "Required value");
        } else if f.path.starts_with('/') {
            e.add(
                format!("{at}.path"),
                format!("Invalid value: {:?}: must be a relative path", f.path),
            );
        } else if f.path.split('/').any(|p| p == "..") {
            e.add(
                format!("{at}.path"),
                format!("Invalid value: {:?}: must not contain '..'", f.path),
            );
        } else if f.path.starts_with("..") {
            e.add(
                format!("{at}.path"),
                format!("Invalid value: {:?}: must not start with '..'", f.path),
            );
        }
        match (&f.field_ref, &f.resource_field_ref) {
            (Some(fr), other) => {
                if !volume_field_path_ok(&fr.field_path) {
                    e.add(
                        format!("{at}.fieldRef.fieldPath"),
                        unsupported(&fr.field_path, VOLUME_FIELD_PATHS),
                    );
                }
                if other.is_some() {
                    e.add(
                        at.clone(),
                        "Invalid value: \"resource\": fieldRef and resourceFieldRef can not be specified simultaneously",
                    );
                }
            }
            (None, Some(r)) => {
                if r.container_name.as_deref().unwrap_or("").is_empty() {
                    e.add(
                        format!("{at}.resourceFieldRef.containerName"),
                        "Required value",
                    );
                }
                validate_resource_field_ref(pod, r, &format!("{at}.resourceFieldRef"), e);
            }
            (None, None) => e.add(
                at.clone(),
                "Required value: one of fieldRef and resourceFieldRef is required",
            ),
        }
        if let Some(m) = f.mode.filter(|m| !(0..=0o777).contains(m)) {
            e.add(format!("{at}.mode"), format!("Invalid value: {m}: {MODE}"));
        }
    }
}
