//! What the window tells the user in passing (a model loaded, an export written, a save
//! that failed), with a level, so every panel and the status bar show a warning or an
//! error the same way (after rerun's `re_ui::notifications`). Panels draw their own
//! inline messages with [`notice_ui`] too.

use eframe::egui;

/// How much a notice matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    /// Something the user may want to fix; the work went on.
    Warning,
    /// Something failed.
    Error,
}

/// One message to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

impl Notice {
    pub fn info(text: impl Into<String>) -> Self {
        Self {
            level: Level::Info,
            text: text.into(),
        }
    }

    pub fn warning(text: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            text: text.into(),
        }
    }
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The text colour of a level (`None`: the normal text colour).
pub fn level_color(ui: &egui::Ui, level: Level) -> Option<egui::Color32> {
    match level {
        Level::Info => None,
        Level::Warning => Some(ui.visuals().warn_fg_color),
        Level::Error => Some(ui.visuals().error_fg_color),
    }
}

/// One message, coloured by its level.
pub fn notice_ui(ui: &mut egui::Ui, level: Level, text: impl Into<String>) -> egui::Response {
    let text = text.into();
    match level_color(ui, level) {
        Some(c) => ui.colored_label(c, text),
        None => ui.label(text),
    }
}

/// The last notice (status bar), with all recent ones on hover.
pub fn last_notice_ui(ui: &mut egui::Ui, notices: &[Notice]) {
    let Some(last) = notices.last() else { return };
    notice_ui(ui, last.level, last.text.as_str()).on_hover_ui(|ui| {
        for n in notices.iter().rev() {
            notice_ui(ui, n.level, n.text.as_str());
        }
    });
}
