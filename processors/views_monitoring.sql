-- modelog monitoring views: reference profiles, production predictions and labels, drift, alerts, performance.
-- Pure functions of the base tables; `modelog rebuild` reproduces them row for row.

-- reference_profiles: the latest reference of each (model, version, column):
--   kind (NUM|INT|CAT), role (FEATURE|PREDICTION|LABEL), count, missing, unique, mean, std, edges (inner
--   quantile bin edges), bin_counts, sample_count, categories (value -> count), logged_at, actor
CREATE OR REPLACE VIEW reference_profiles AS
SELECT model, version, column_name, kind, role, "rows", "count", missing, "unique", mean, std, edges, bin_counts,
       sample_count, categories, logged_at, actor
FROM log_reference_columns
QUALIFY row_number() OVER (PARTITION BY model, version, column_name ORDER BY logged_at DESC, event_id DESC) = 1;

-- labels: ground truth by request (the latest label wins): model, deployment, request_id, label (number)
--   or label_text, logged_at
CREATE OR REPLACE VIEW labels AS
SELECT model, deployment, request_id, label, label_text, logged_at
FROM log_labels
QUALIFY row_number() OVER (PARTITION BY model, deployment, request_id ORDER BY logged_at DESC, event_id DESC) = 1;

-- predictions: one row per production request: model, deployment, version, request_id, timestamp,
--   features (MAP name -> number), feature_text (MAP name -> text), prediction (number) or prediction_text,
--   score (probability of the positive class, if logged), label / label_text once known
CREATE OR REPLACE VIEW predictions AS
SELECT p.model, p.deployment, p.version, p.request_id, p."timestamp", p.features, p.feature_text,
       p.prediction, p.prediction_text, p.score, l.label, l.label_text
FROM log_predictions p
LEFT JOIN labels l USING (model, deployment, request_id);

-- prediction_rates: per (model, deployment, minute): predictions received and predictions the clients
--   dropped (full buffer) -- drops are counted, never silent
CREATE OR REPLACE VIEW prediction_rates AS
SELECT model, deployment, date_trunc('minute', logged_at) AS minute, sum(rows) AS predictions,
       sum(dropped) AS dropped, count(*) AS batches
FROM log_prediction_batches
GROUP BY ALL;

-- monitor_configs: the configuration in force per model (window, methods, thresholds, hysteresis)
CREATE OR REPLACE VIEW monitor_configs AS
SELECT model, window_rows, window_seconds, methods, thresholds, drift_share, raise_after, resolve_after, set_at, set_by
FROM log_monitor_config
QUALIFY row_number() OVER (PARTITION BY model ORDER BY set_at DESC, event_id DESC) = 1;

-- drift_windows: one row per measured window: model, deployment, version, window, window_start,
--   window_end, rows, dropped, drift_share (share of drifted features), dataset_drift, measured_at
CREATE OR REPLACE VIEW drift_windows AS
SELECT model, deployment, version, "window", window_start, window_end, rows, dropped, drift_share, dataset_drift,
       measured_at
FROM log_drift_windows;

-- drift_metrics: the history of every column's drift, one row per (window, column): method (ks,
--   chisquare, z, wasserstein, jensenshannon, psi), score and threshold, drift, sample sizes, missing
--   shares, every statistic that applies to the kind (others NULL), unseen categories
CREATE OR REPLACE VIEW drift_metrics AS
SELECT c.model, c.deployment, w.version, c."window", w.window_start, w.window_end, c.column_name AS "column",
       c.kind, c.role, c.method, c.score, c.threshold, c.drift, c.n_ref, c.n_cur, c.missing_ref, c.missing_cur,
       c.ks_stat, c.ks_p, c.psi, c.js, c.wasserstein_norm, c.chi2_p, c.unseen, c.measured_at
FROM log_drift_columns c JOIN log_drift_windows w USING (event_id);

-- alerts: every alert state change (RAISED | RESOLVED), newest last: alert_id (the incident), model,
--   deployment, rule, state, severity, window, value, threshold, message, changed_at
CREATE OR REPLACE VIEW alerts AS
SELECT alert_id, model, deployment, rule, state, severity, "window", value, threshold, message, changed_at
FROM log_alerts;

-- alert_incidents: one row per incident: raised_at, resolved_at (NULL: open), the raising window's
--   value and threshold, and the message
CREATE OR REPLACE VIEW alert_incidents AS
SELECT alert_id, any_value(model) AS model, any_value(deployment) AS deployment, any_value(rule) AS rule,
       min(changed_at) FILTER (WHERE state = 'RAISED') AS raised_at,
       max(changed_at) FILTER (WHERE state = 'RESOLVED') AS resolved_at,
       CASE WHEN bool_or(state = 'RESOLVED') THEN 'RESOLVED' ELSE 'OPEN' END AS status,
       arg_min(value, changed_at) AS value, arg_min(threshold, changed_at) AS threshold,
       arg_min(message, changed_at) AS message
FROM log_alerts
GROUP BY alert_id;

-- performance: per drift window, over the window's labelled predictions (by prediction time):
--   classification (text predictions and labels): accuracy, and precision / recall / F1 macro-averaged
--   over the classes seen (a class never predicted scores 0, like scikit-learn's zero_division=0);
--   auc from `score` when the labels are binary (0/1 as numbers or text; Mann-Whitney with mid-ranks);
--   regression (numeric predictions and labels): mae, rmse. labelled: how many predictions had a label.
CREATE OR REPLACE VIEW performance AS
WITH joined AS (
    SELECT w.model, w.deployment, w."window", p.prediction, p.prediction_text, p.score, p.label, p.label_text
    FROM drift_windows w
    JOIN predictions p ON p.model = w.model AND p.deployment = w.deployment
                      AND p."timestamp" BETWEEN w.window_start AND w.window_end
    WHERE p.label IS NOT NULL OR p.label_text IS NOT NULL
), classes AS (
    SELECT model, deployment, "window", cls,
           count(*) FILTER (WHERE prediction_text = cls AND label_text = cls) AS tp,
           count(*) FILTER (WHERE prediction_text = cls AND label_text <> cls) AS fp,
           count(*) FILTER (WHERE prediction_text <> cls AND label_text = cls) AS fn
    FROM joined, (SELECT DISTINCT unnest([prediction_text, label_text]) AS cls FROM joined) c
    WHERE prediction_text IS NOT NULL AND label_text IS NOT NULL AND cls IS NOT NULL
    GROUP BY ALL
), per_class AS (
    SELECT model, deployment, "window",
           avg(CASE WHEN tp + fp = 0 THEN 0 ELSE tp / (tp + fp) END) AS precision_macro,
           avg(CASE WHEN tp + fn = 0 THEN 0 ELSE tp / (tp + fn) END) AS recall_macro,
           avg(CASE WHEN 2 * tp + fp + fn = 0 THEN 0 ELSE 2 * tp / (2 * tp + fp + fn) END) AS f1_macro
    FROM classes
    WHERE tp + fn > 0 OR tp + fp > 0
    GROUP BY ALL
), ranked AS (
    SELECT model, deployment, "window", coalesce(label, TRY_CAST(label_text AS DOUBLE)) AS y,
           rank() OVER (PARTITION BY model, deployment, "window" ORDER BY score)
             + (count(*) OVER (PARTITION BY model, deployment, "window", score) - 1) / 2.0 AS r
    FROM joined WHERE score IS NOT NULL
), auc AS (
    SELECT model, deployment, "window",
           CASE WHEN count(*) FILTER (WHERE y = 1) > 0 AND count(*) FILTER (WHERE y = 0) > 0
                 AND count(*) FILTER (WHERE y NOT IN (0, 1) OR y IS NULL) = 0
                THEN (sum(r) FILTER (WHERE y = 1) - count(*) FILTER (WHERE y = 1) * (count(*) FILTER (WHERE y = 1) + 1) / 2.0)
                     / (count(*) FILTER (WHERE y = 1) * count(*) FILTER (WHERE y = 0)) END AS auc
    FROM ranked GROUP BY ALL
), base AS (
    SELECT model, deployment, "window", count(*) AS labelled,
           avg(CASE WHEN prediction_text = label_text THEN 1.0 ELSE 0.0 END)
               FILTER (WHERE prediction_text IS NOT NULL AND label_text IS NOT NULL) AS accuracy,
           avg(abs(prediction - label)) FILTER (WHERE prediction IS NOT NULL AND label IS NOT NULL) AS mae,
           sqrt(avg((prediction - label) ^ 2) FILTER (WHERE prediction IS NOT NULL AND label IS NOT NULL)) AS rmse
    FROM joined GROUP BY ALL
)
SELECT b.model, b.deployment, b."window", b.labelled, b.accuracy, c.precision_macro, c.recall_macro, c.f1_macro,
       a.auc, b.mae, b.rmse
FROM base b
LEFT JOIN per_class c USING (model, deployment, "window")
LEFT JOIN auc a USING (model, deployment, "window");
