//! The window (eframe + egui). Only this module knows egui.
