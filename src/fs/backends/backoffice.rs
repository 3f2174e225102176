//! The backoffice namespace (stub).
