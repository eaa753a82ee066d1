//! The Train job: LoRA fine-tuning of the LLM recommender ([`crate::llm::finetune::train`]) on
//! the worker thread, its progress streamed to the UI as [`Event::Train`] events.
//!
//! Training needs the concrete candle engine, which the worker owns as a
//! `Box<dyn LanguageModel>`: the job downcasts through [`LanguageModel::as_any_mut`], and
//! a model that is not an engine (a test fake) fails the job with a clear message.
//! Cancel is the job's token: training stops at the next example (or validation case).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Emitter, Event, JobId};
use crate::data::{Case, Catalogue, ItemTextTemplate};
use crate::lm::{CancelToken, LanguageModel};
use crate::prompt::Templates;
use crate::rank::RecommendOptions;
use crate::train::{TrainEvent, TrainInput, TrainReport, TrainSettings};

/// Fine-tune the loaded model's recommender with LoRA; all the data it reads is owned.
#[derive(Clone, Debug)]
pub struct TrainJob {
    /// The training cases (the dataset's `train` split).
    pub train: Vec<Case>,
    /// The validation cases (the `val` split; may be empty: no validation).
    pub val: Vec<Case>,
    pub catalogue: Arc<Catalogue>,
    pub text_template: ItemTextTemplate,
    pub templates: Templates,
    /// Case id -> preference summary for its prompts (cases without one get none).
    pub summaries: HashMap<String, String>,
    pub options: RecommendOptions,
    pub settings: TrainSettings,
    /// Output folder: the adapter (PEFT), `checkpoints/`, `train_log.json`.
    pub out: PathBuf,
}

/// Runs a Train job: streams each [`TrainEvent`], then the report (also when
/// cancelled, so the UI learns where the interrupted weights went).
pub fn run(
    lm: &mut dyn LanguageModel,
    id: JobId,
    job: &TrainJob,
    cancel: &CancelToken,
    em: &mut Emitter,
) -> anyhow::Result<TrainReport> {
    let name = lm.identity().name;
    let Some(engine) = lm
        .as_any_mut()
        .and_then(|m| m.downcast_mut::<crate::llm::Engine>())
    else {
        if lm.identity().architecture.starts_with("remote") {
            anyhow::bail!("{}", crate::remote::TRAIN_IN_PROCESS);
        }
        anyhow::bail!(
            "training needs the candle engine (a GGUF or safetensors model); the loaded \
             model `{name}` is not one"
        );
    };
    let input = TrainInput {
        train: job.train.iter().collect(),
        val: job.val.iter().collect(),
        catalogue: &job.catalogue,
        text: &job.text_template,
        templates: &job.templates,
        summaries: &job.summaries,
        opts: job.options.clone(),
    };
    let mut on_event = |ev: &TrainEvent| {
        let sent = em.send(Event::Train {
            job: id,
            event: ev.clone(),
        });
        if sent.is_err() {
            // The UI is gone: stop at the next example.
            cancel.cancel();
        }
    };
    let report = crate::llm::finetune::train(
        engine,
        &input,
        &job.settings,
        &job.out,
        cancel,
        &mut on_event,
    )?;
    let _ = em.send(Event::TrainReport {
        job: id,
        report: Box::new(report.clone()),
    });
    Ok(report)
}
