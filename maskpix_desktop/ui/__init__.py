"""Qt widgets, canvas, dialogs and the model-service worker. No model maths here."""
