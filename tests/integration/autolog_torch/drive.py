"""Runs in tests/.venv-torch (torch, lightning, transformers, modelog): ``modelog.autolog()`` then one tiny
training of PyTorch Lightning or the Hugging Face Trainer on data made here, logging to the deployment
named by the MODELOG_* environment. It then downloads the stored model back through modelog, loads it
with the framework and checks it predicts as the trained one, and writes to OUT (JSON) what the
framework itself recorded, for the test to compare with modelog's views.

    python drive.py OUT lightning|transformers
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import modelog
from modelog.sdk.fluent import default_client


def lightning(work: Path) -> dict:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    class Tiny(pl.LightningModule):
        def __init__(self, hidden: int = 4, lr: float = 0.05):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

        def forward(self, x):
            return self.net(x).squeeze(-1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self(x), y), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    X = torch.randn(64, 3)
    y = X @ torch.tensor([1.0, -2.0, 0.5])
    train = DataLoader(TensorDataset(X, y), batch_size=16)
    val = DataLoader(TensorDataset(X[:16], y[:16]), batch_size=16)
    csv_logger = CSVLogger(str(work), name="csv")  # what Lightning hands every logger, to compare with
    trainer = pl.Trainer(max_epochs=3, logger=csv_logger, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=str(work))
    model = Tiny()
    assert modelog.autolog(frameworks=["lightning"]) == ["lightning"]
    try:
        trainer.fit(model, train, val)
    finally:
        modelog.autolog(frameworks=["lightning"], disable=True)
    assert trainer.loggers == [csv_logger]  # ours joined for the call only
    with open(Path(csv_logger.log_dir) / "metrics.csv") as fh:
        rows = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]

    run_id = _wait_and_find_run()
    ckpt = modelog.download_artifact(run_id, "model/model.ckpt", str(work / "model.ckpt"))
    again = Tiny.load_from_checkpoint(str(ckpt))
    model.eval(), again.eval()
    with torch.no_grad():
        same = torch.equal(again(X), model(X))
    return {"run_id": run_id, "csv": rows, "global_step": trainer.global_step, "reloaded_same": same,
            "weights": sum(p.numel() for p in model.parameters())}


def transformers(work: Path) -> dict:
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(config)
    ids = torch.randint(0, 32, (24, 6))
    labels = (ids[:, 0] >= 16).long()
    train = TensorDataset(ids, labels)

    def collate(rows):
        return {"input_ids": torch.stack([r[0] for r in rows]), "labels": torch.stack([r[1] for r in rows])}

    args = TrainingArguments(output_dir=str(work / "out"), num_train_epochs=3, per_device_train_batch_size=8,
                             learning_rate=1e-3, logging_strategy="epoch", eval_strategy="epoch", save_strategy="no",
                             report_to="none", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=train, data_collator=collate)
    callbacks_before = len(trainer.callback_handler.callbacks)
    assert modelog.autolog(frameworks=["transformers"]) == ["transformers"]
    try:
        trainer.train()
    finally:
        modelog.autolog(frameworks=["transformers"], disable=True)
    assert len(trainer.callback_handler.callbacks) == callbacks_before  # ours joined for the call only

    run_id = _wait_and_find_run()
    saved = modelog.download_artifact(run_id, "model", str(work / "downloaded"))
    again = BertForSequenceClassification.from_pretrained(str(saved), local_files_only=True)
    model.eval(), again.eval()
    with torch.no_grad():
        same = torch.allclose(again(input_ids=ids).logits, model(input_ids=ids).logits)
    return {"run_id": run_id, "log_history": trainer.state.log_history, "global_step": trainer.state.global_step,
            "reloaded_same": same, "files": sorted(p.name for p in Path(saved).iterdir())}


def _wait_and_find_run() -> str:
    client = default_client()
    client.wait_projected(timeout=120)
    from modelog.consumers.query import sql_arrow

    [row] = sql_arrow("SELECT run_id FROM runs", client.settings).to_pylist()
    return row["run_id"]


if __name__ == "__main__":
    out, phase = Path(sys.argv[1]), sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        report = {"lightning": lightning, "transformers": transformers}[phase](Path(tmp))
    out.write_text(json.dumps(report, default=str))
