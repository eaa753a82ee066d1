//! Sequence & blocks: the selected user's items as cards coloured by block; live
//! re-segmentation; the item text template editor.

use super::{Command, Settings, Workbench};
use crate::app::notices::{notice_ui, Level};
use eframe::egui;

/// A block's colour (shared with the summaries panel).
pub fn block_color(i: usize, dark: bool) -> egui::Color32 {
    const HUES: [(u8, u8, u8); 8] = [
        (66, 133, 244),
        (52, 168, 83),
        (251, 188, 5),
        (234, 67, 53),
        (171, 71, 188),
        (0, 172, 193),
        (255, 112, 67),
        (124, 179, 66),
    ];
    let (r, g, b) = HUES[i % HUES.len()];
    if dark {
        egui::Color32::from_rgba_unmultiplied(r, g, b, 60)
    } else {
        egui::Color32::from_rgba_unmultiplied(r, g, b, 40)
    }
}

/// A framed card.
pub fn card<R>(ui: &mut egui::Ui, fill: egui::Color32, add: impl FnOnce(&mut egui::Ui) -> R) -> R {
    egui::Frame::group(ui.style())
        .fill(fill)
        .corner_radius(6.0)
        .inner_margin(6.0)
        .show(ui, add)
        .inner
}

pub fn block_controls_ui(ui: &mut egui::Ui, settings: &mut Settings) {
    let b = &mut settings.blocks;
    ui.horizontal_wrapped(|ui| {
        ui.label("Cut by");
        ui.selectable_value(&mut b.by_tokens, false, "item count");
        ui.selectable_value(&mut b.by_tokens, true, "token budget");
        ui.separator();
        if b.by_tokens {
            ui.add(egui::Slider::new(&mut b.budget_tokens, 16..=2048).text("token budget"));
        } else {
            ui.add(egui::Slider::new(&mut b.size, 1..=20).text("block size"));
        }
        ui.add(egui::Slider::new(&mut b.max_blocks, 1..=20).text("max blocks"));
        if ui
            .button("Paper (5 x 5)")
            .on_hover_text("5 items per block, at most 5 blocks")
            .clicked()
        {
            *b = super::BlockControls::default();
        }
    });
}

pub fn template_ui(ui: &mut egui::Ui, settings: &mut Settings) {
    let t = &mut settings.text_template;
    ui.horizontal_wrapped(|ui| {
        let l = ui.label("Item fields");
        let mut fields = t.fields.join(", ");
        if ui
            .add(
                egui::TextEdit::singleline(&mut fields)
                    .hint_text("all fields")
                    .desired_width(220.0),
            )
            .labelled_by(l.id)
            .on_hover_text("Fields to render, in order (comma separated); empty = all")
            .changed()
        {
            t.fields = fields
                .split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect();
        }
        let l = ui.label("or format");
        let mut fmt = t.format.clone().unwrap_or_default();
        if ui
            .add(
                egui::TextEdit::singleline(&mut fmt)
                    .hint_text("{title} ({category})")
                    .desired_width(220.0),
            )
            .labelled_by(l.id)
            .on_hover_text("A format string with {field} placeholders; overrides the field list")
            .changed()
        {
            t.format = (!fmt.trim().is_empty()).then_some(fmt);
        }
        let mut cap = t.max_field_chars.unwrap_or(0);
        if ui
            .add(
                egui::DragValue::new(&mut cap)
                    .range(0..=2000)
                    .prefix("max chars/field: "),
            )
            .on_hover_text("cap on each field's length (0 = none)")
            .changed()
        {
            t.max_field_chars = (cap > 0).then_some(cap);
        }
    });
}

pub fn blocks_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    cmds: &mut Vec<Command>,
) {
    block_controls_ui(ui, settings);
    template_ui(ui, settings);
    ui.separator();
    let (Some(data), Some(case)) = (&wb.data, wb.selected_case()) else {
        ui.label("Select a user on the left.");
        return;
    };
    let Some(seg) = wb.segmentation(settings) else {
        return;
    };
    let ctx_len = wb.context_len();
    // Ask the worker for exact counts of what is shown.
    let mut wanted: Vec<String> = Vec::new();
    for b in &seg.blocks {
        wanted.push(b.text.clone());
        wanted.extend(b.text.split('\n').map(String::from));
    }
    if wanted.iter().any(|t| !wb.token_counts.contains_key(t)) {
        cmds.push(Command::RequestTokenCounts(wanted));
    }
    ui.horizontal(|ui| {
        ui.strong(format!("User {} · case {}", case.user, case.case));
        ui.label(format!(
            "· {} history items · {} blocks",
            case.history.len(),
            seg.blocks.len()
        ));
        if seg.dropped_oldest > 0 {
            ui.label(format!("· {} oldest left out", seg.dropped_oldest));
        }
    });
    let dark = ui.visuals().dark_mode;
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for (bi, b) in seg.blocks.iter().enumerate() {
                let (tokens, exact) = wb.count_tokens(&b.text);
                card(ui, block_color(bi, dark), |ui| {
                    ui.set_width(ui.available_width());
                    ui.horizontal(|ui| {
                        ui.strong(format!("Block {}", bi + 1));
                        let approx = if exact { "" } else { "~" };
                        let ctx_txt = ctx_len
                            .map(|c| format!(" / {c} context"))
                            .unwrap_or_default();
                        let over = ctx_len.is_some_and(|c| tokens > c);
                        let txt = format!("{approx}{tokens} tokens{ctx_txt}");
                        if over {
                            notice_ui(ui, Level::Error, txt);
                        } else {
                            ui.label(txt);
                        }
                        if b.oversized {
                            notice_ui(ui, Level::Warning, "one item over the budget");
                        }
                    });
                    for (id, line) in b.item_ids.iter().zip(b.text.split('\n')) {
                        ui.horizontal_wrapped(|ui| {
                            ui.monospace(id);
                            ui.label(line);
                        });
                    }
                });
            }
            ui.add_space(8.0);
            ui.strong("Target");
            card(
                ui,
                egui::Color32::from_rgba_unmultiplied(46, 160, 67, 50),
                |ui| {
                    ui.set_width(ui.available_width());
                    let text = data
                        .catalogue
                        .get(&case.target)
                        .map(|it| settings.text_template.render(it))
                        .unwrap_or_else(|| "(not in the catalogue)".into());
                    ui.horizontal_wrapped(|ui| {
                        ui.monospace(&case.target);
                        ui.label(text);
                    });
                },
            );
            egui::CollapsingHeader::new(format!("Negatives ({})", case.negatives.len())).show(
                ui,
                |ui| {
                    for id in &case.negatives {
                        let text = data
                            .catalogue
                            .get(id)
                            .map(|it| settings.text_template.render(it))
                            .unwrap_or_else(|| "(not in the catalogue)".into());
                        ui.horizontal_wrapped(|ui| {
                            ui.monospace(id);
                            ui.weak(text);
                        });
                    }
                },
            );
        });
}
