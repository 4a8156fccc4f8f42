// A plain white text field with a thin border, as on KakaoTalk's forms.
import QtQuick 2.15
import QtQuick.Controls 2.15
import "."

TextField {
    id: field
    font.pixelSize: Theme.fontNormal
    color: Theme.ink
    selectByMouse: true
    leftPadding: 12
    rightPadding: 12
    implicitHeight: 42
    background: Rectangle {
        color: "white"
        radius: 4
        border.color: field.activeFocus ? "#C9B400" : Theme.line
    }
}
