//! Accuracy bookkeeping for classification runs.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ClassAccuracy {
    pub class: usize,
    pub name: String,
    pub images: usize,
    pub correct: usize,
    pub accuracy: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub images: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    pub fn new(labels: &[u8], predicted: &[usize], class_names: &[&str]) -> Self {
        assert_eq!(labels.len(), predicted.len());
        let k = class_names.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &p) in labels.iter().zip(predicted) {
            confusion[t as usize][p] += 1;
        }
        let correct = (0..k).map(|c| confusion[c][c]).sum();
        let per_class = (0..k)
            .map(|c| {
                let images: usize = confusion[c].iter().sum();
                ClassAccuracy {
                    class: c,
                    name: class_names[c].to_string(),
                    images,
                    correct: confusion[c][c],
                    accuracy: ratio(confusion[c][c], images),
                }
            })
            .collect();
        Evaluation { images: labels.len(), correct, accuracy: ratio(correct, labels.len()), per_class, confusion }
    }

    /// The per-class table and confusion matrix, for a terminal.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let width = self.per_class.iter().map(|c| c.name.len()).max().unwrap_or(5).max(5);
        s += &format!("{:<width$}  images  correct  accuracy\n", "class");
        for c in &self.per_class {
            s += &format!("{:<width$}  {:>6}  {:>7}  {:>7.2}%\n", c.name, c.images, c.correct, 100.0 * c.accuracy);
        }
        s += "\nconfusion matrix (rows: true class, columns: predicted)\n";
        s += &format!("{:<width$} ", "");
        for c in &self.per_class {
            s += &format!("{:>5}", &c.name[..c.name.len().min(4)]);
        }
        s += "\n";
        for (c, row) in self.per_class.iter().zip(&self.confusion) {
            s += &format!("{:<width$} ", c.name);
            for v in row {
                s += &format!("{v:>5}");
            }
            s += "\n";
        }
        s
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_accuracy() {
        let e = Evaluation::new(&[0, 0, 1, 2], &[0, 1, 1, 0], &["a", "b", "c"]);
        assert_eq!(e.correct, 2);
        assert_eq!(e.confusion, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 0]]);
        assert_eq!(e.per_class[0].accuracy, 0.5);
        assert_eq!(e.per_class[2].accuracy, 0.0);
        assert_eq!(e.accuracy, 0.5);
    }
}
