"""Framework integrations (autologging for scikit-learn, XGBoost, LightGBM, Keras, Lightning, Hugging Face)
and importers (MLflow, TensorBoard), each built on the SDK. Their modules land here."""
